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
 * `withholdConfirms()`: AMQP links stay up, heartbeats and all, but their
 * publisher confirms never reach the client. `nackConfirms()`: every ack on them
 * reaches the client as a nack.
 */
export class TcpProxy {
  private readonly server: Server;
  private readonly pairs = new Set<Socket>();
  /** Client sockets whose broker-to-client AMQP frames are filtered. */
  private readonly withholding = new Map<Socket, 'drop' | 'nack'>();
  private readonly clients = new Set<Socket>();
  private mode: 'open' | 'refuse' | 'blackhole' = 'open';
  port = 0;
  /** Connections accepted and forwarded so far. */
  connections = 0;

  private constructor(
    private readonly targetPort: number,
    private readonly targetHost: string,
    /** The target speaks AMQP: server-to-client bytes are forwarded frame by frame (needed by withholdConfirms). */
    private readonly amqpFrames: boolean,
  ) {
    this.server = createServer((client) => this.onConnection(client));
  }

  static async start(targetPort: number, targetHost = '127.0.0.1', opts: { amqpFrames?: boolean } = {}): Promise<TcpProxy> {
    const p = new TcpProxy(targetPort, targetHost, opts.amqpFrames ?? false);
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
    if (!this.amqpFrames) {
      upstream.pipe(client);
      return;
    }
    // Server-to-client bytes are split into AMQP frames (the server sends no protocol
    // header on success), so frames can be held back on a link already open.
    const frames = new AmqpFrameSplitter();
    upstream.on('data', (chunk: Buffer) => {
      for (const frame of frames.push(chunk)) {
        const fault = this.withholding.get(client);
        let out = frame;
        if (fault === 'drop' && isConfirm(frame)) continue;
        // basic.ack and basic.nack have the same arguments (delivery tag, then a bit field whose first bit is `multiple`).
        if (fault === 'nack' && isConfirm(frame) && frame.readUInt16BE(9) === BASIC_ACK) {
          out = Buffer.from(frame);
          out.writeUInt16BE(BASIC_NACK, 9);
        }
        if (!client.write(out)) upstream.pause();
      }
    });
    // Not while partitioned: partition() pauses the upstream on purpose.
    client.on('drain', () => this.mode === 'open' && upstream.resume());
    this.clients.add(client);
    client.once('close', () => {
      this.clients.delete(client);
      this.withholding.delete(client);
    });
  }

  /**
   * Every AMQP link open now keeps working except that basic.ack and basic.nack
   * from the broker are dropped: its publishes are taken and never confirmed.
   * Links opened afterwards are normal.
   */
  withholdConfirms(): void {
    this.faultOpenLinks('drop');
  }

  /** Every AMQP link open now gets a nack for each publish the broker acks. Links opened afterwards are normal. */
  nackConfirms(): void {
    this.faultOpenLinks('nack');
  }

  private faultOpenLinks(fault: 'drop' | 'nack'): void {
    if (!this.amqpFrames) throw new Error('confirm faults need TcpProxy.start(…, { amqpFrames: true })');
    for (const s of this.clients) this.withholding.set(s, fault);
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

/** Cuts a byte stream into AMQP 0-9-1 frames: type (1), channel (2), size (4), payload, 0xCE. */
class AmqpFrameSplitter {
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Buffer[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const out: Buffer[] = [];
    while (this.buf.length >= 7) {
      const end = 7 + this.buf.readUInt32BE(3) + 1;
      if (this.buf.length < end) break;
      out.push(this.buf.subarray(0, end));
      this.buf = this.buf.subarray(end);
    }
    return out;
  }
}

const BASIC_ACK = 80;
const BASIC_NACK = 120;

/** A method frame (type 1) of class basic (60): ack or nack. */
function isConfirm(frame: Buffer): boolean {
  return frame[0] === 1 && frame.length >= 11 && frame.readUInt16BE(7) === 60 && [BASIC_ACK, BASIC_NACK].includes(frame.readUInt16BE(9));
}
