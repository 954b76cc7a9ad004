import { expect } from 'chai';
import { createServer, connect, type Server, type AddressInfo, type Socket } from 'node:net';
import amqp from 'amqplib';
import { TcpProxy } from '../support/tcp-proxy.js';
import { createVhost, type Vhost } from '../support/rabbit.js';

/** An echo server: what the proxy forwards comes back. */
async function echoServer(): Promise<Server> {
  const s = createServer((c) => {
    c.on('error', () => {});
    c.pipe(c);
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  return s;
}

function roundTrip(port: number, text: string, timeoutMs = 1000): Promise<string> {
  return new Promise((resolve, reject) => {
    const c: Socket = connect({ port, host: '127.0.0.1' });
    const t = setTimeout(() => {
      c.destroy();
      reject(new Error('timeout'));
    }, timeoutMs);
    c.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
    c.once('data', (d) => {
      clearTimeout(t);
      c.end();
      resolve(d.toString());
    });
    c.write(text);
  });
}

describe('test support: TCP proxy', () => {
  let echo: Server;
  let proxy: TcpProxy;
  let vhost: Vhost | undefined;
  before(async () => {
    echo = await echoServer();
    proxy = await TcpProxy.start((echo.address() as AddressInfo).port);
  });
  after(async () => {
    await proxy?.close();
    await new Promise((r) => echo?.close(r));
    await vhost?.drop();
  });

  it('forwards, blackholes while cut, refuses in refuse mode, and forwards again after restore', async () => {
    expect(await roundTrip(proxy.port, 'hello')).to.equal('hello');
    // A connection open at the cut is torn down.
    const open = connect({ port: proxy.port, host: '127.0.0.1' });
    open.on('error', () => {});
    await new Promise((r) => open.once('connect', r));
    const closed = new Promise((r) => open.once('close', r));
    proxy.cut();
    await closed;
    let err = await roundTrip(proxy.port, 'x', 500).catch((e: Error) => e);
    expect((err as Error).message).to.equal('timeout');
    proxy.cut('refuse');
    err = await roundTrip(proxy.port, 'x', 500).catch((e: Error) => e);
    expect((err as NodeJS.ErrnoException).code).to.equal('ECONNRESET');
    proxy.restore();
    expect(await roundTrip(proxy.port, 'again')).to.equal('again');
  });

  it('partition: an open connection stays open but carries nothing until restore() drops it', async () => {
    const c = connect({ port: proxy.port, host: '127.0.0.1' });
    c.on('error', () => {});
    await new Promise((r) => c.once('connect', r));
    const echoed: string[] = [];
    c.on('data', (d) => echoed.push(d.toString()));
    c.write('one');
    await new Promise((r) => setTimeout(r, 200));
    expect(echoed.join('')).to.equal('one');
    proxy.partition();
    let closed = false;
    c.once('close', () => (closed = true));
    c.write('two');
    await new Promise((r) => setTimeout(r, 500));
    expect(echoed.join('')).to.equal('one');
    expect(closed, 'no reset, no FIN').to.equal(false);
    const err = await roundTrip(proxy.port, 'x', 300).catch((e: Error) => e);
    expect((err as Error).message).to.equal('timeout');
    proxy.restore();
    await new Promise((r) => setTimeout(r, 100));
    expect(closed).to.equal(true);
    expect(await roundTrip(proxy.port, 'three')).to.equal('three');
  });

  it('carries an AMQP connection, which a cut closes', async () => {
    vhost = await createVhost('proxy');
    const p = await TcpProxy.start(5672);
    try {
      const conn = await amqp.connect(p.via(vhost.url));
      conn.on('error', () => {});
      const gone = new Promise((r) => conn.once('close', r));
      const ch = await conn.createChannel();
      await ch.assertQueue('', { exclusive: true });
      p.cut();
      await gone;
      const e = await amqp.connect(p.via(vhost.url), { timeout: 500 }).catch((x: Error) => x);
      expect(e).to.be.instanceOf(Error);
      p.restore();
      const again = await amqp.connect(p.via(vhost.url));
      await again.close();
    } finally {
      await p.close();
    }
  });
});
