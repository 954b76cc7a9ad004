import { createServer, connect, type Server, type Socket, type AddressInfo } from 'node:net';

/**
 * A TCP proxy on 127.0.0.1 in front of one port, so a test can cut a single
 * client's link (one gateway instance's broker connection) while everything
 * else keeps talking to the same server directly.
 *
 * `cut('blackhole')`: connections are torn down and new ones are accepted but
 * never answered (a client sees a hang, not a refusal). `cut('refuse')`: a
 * host that is up with nothing listening, new connections are reset at once.
 * `partition()`: nothing is torn down, nothing gets through.
 */
export class TcpProxy {
  private readonly server: Server;
  private readonly pairs = new Set<Socket>();
  private mode: 'open' | 'refuse' | 'blackhole' = 'open';
  port = 0;
  /** Connections accepted and forwarded so far. */
  connections = 0;

  private constructor(
    private readonly targetPort: number,
    private readonly targetHost: string,
  ) {
    this.server = createServer((client) => this.onConnection(client));
  }

  static async start(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
    const p = new TcpProxy(targetPort, targetHost);
    await new Promise<void>((resolve, reject) => {
      p.server.once('error', reject);
      p.server.listen(0, '127.0.0.1', () => resolve());
    });
    p.port = (p.server.address() as AddressInfo).port;
    return p;
  }

  /** `url` with its host and port replaced by the proxy's. */
  via(url: string): string {
    const u = new URL(url);
    u.hostname = '127.0.0.1';
    u.port = String(this.port);
    return u.toString();
  }

  get isCut(): boolean {
    return this.mode !== 'open';
  }

  private onConnection(client: Socket): void {
    client.on('error', () => {});
    if (this.mode === 'refuse') {
      client.resetAndDestroy();
      return;
    }
    this.pairs.add(client);
    client.once('close', () => this.pairs.delete(client));
    if (this.mode === 'blackhole') {
      // Held open and silent until restore() or close() destroys it.
      client.pause();
      return;
    }
    this.connections++;
    const upstream = connect({ port: this.targetPort, host: this.targetHost });
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    upstream.once('close', () => client.destroy());
    client.once('close', () => upstream.destroy());
    this.pairs.add(upstream);
    upstream.once('close', () => this.pairs.delete(upstream));
    client.pipe(upstream);
    upstream.pipe(client);
  }

  /** Destroy every open connection; refuse or blackhole new ones until `restore()`. */
  cut(mode: 'blackhole' | 'refuse' = 'blackhole'): void {
    this.mode = mode;
    for (const s of [...this.pairs]) s.destroy();
  }

  /**
   * A silent partition: open connections stay open but carry nothing either
   * way (no reset, no FIN, so the client only finds out by its own timeouts),
   * and new ones are blackholed, until `restore()`.
   */
  partition(): void {
    this.mode = 'blackhole';
    for (const s of this.pairs) {
      s.unpipe();
      s.pause();
    }
  }

  /** Forward new connections again (held blackholed ones are dropped so their clients retry). */
  restore(): void {
    this.mode = 'open';
    // Whatever is still open was held silent: drop it so its client reconnects.
    for (const s of [...this.pairs]) s.destroy();
  }

  async close(): Promise<void> {
    this.mode = 'refuse';
    for (const s of [...this.pairs]) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
