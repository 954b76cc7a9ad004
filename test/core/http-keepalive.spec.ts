import { expect } from 'chai';
import { Agent, request, type IncomingHttpHeaders } from 'node:http';
import { connect, type Socket } from 'node:net';
import { startTestGateway, type TestGateway } from '../support/gateway.js';

/** GET /healthz on `agent`; resolves with the answer's headers and the socket it came on. */
function get(tg: TestGateway, agent: Agent): Promise<{ status: number; headers: IncomingHttpHeaders; socket: Socket }> {
  return new Promise((resolve, reject) => {
    const req = request(`${tg.baseUrl}/healthz`, { agent }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, socket: req.socket as Socket }));
    });
    req.on('error', reject);
    req.end();
  });
}

/**
 * HTTP_KEEPALIVE_TIMEOUT: the bench's sender met ECONNRESET on connections the gateway closed
 * after 5 s idle just as a request left on them. The gateway now keeps idle connections
 * longer than a proxy in front would, and says so in `Keep-Alive`.
 */
describe('HTTP keep-alive: idle connections', function () {
  this.timeout(30_000);
  const gateways: TestGateway[] = [];
  const agents: Agent[] = [];
  after(async () => {
    for (const a of agents) a.destroy();
    for (const g of gateways) await g.stop();
  });

  it('keeps an idle connection open for 65 s by default and names the timeout in Keep-Alive', async () => {
    const tg = await startTestGateway({});
    gateways.push(tg);
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    agents.push(agent);
    const first = await get(tg, agent);
    expect(first.status).to.equal(200);
    expect(first.headers['keep-alive']).to.equal('timeout=65');
    // Longer than the 5 s the gateway used to allow: the same socket still answers.
    await new Promise((r) => setTimeout(r, 5_500));
    const second = await get(tg, agent);
    expect(second.status).to.equal(200);
    expect(second.socket, 'the same connection').to.equal(first.socket);
  });

  it('closes an idle connection after HTTP_KEEPALIVE_TIMEOUT', async () => {
    const tg = await startTestGateway({ HTTP_KEEPALIVE_TIMEOUT: '1s' });
    gateways.push(tg);
    // A raw socket: Node's own Agent closes a connection itself when the server's Keep-Alive hint runs out.
    const socket = connect(tg.gateway.port, '127.0.0.1');
    let answer = '';
    const idle = new Promise<number>((resolve, reject) => {
      let answeredAt = 0;
      socket.on('data', (d: Buffer) => {
        answer += d.toString();
        if (answer.includes('\r\n\r\n') && !answeredAt) answeredAt = Date.now();
      });
      socket.on('error', reject);
      socket.on('close', () => resolve(Date.now() - answeredAt));
    });
    socket.write('GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n');
    const idleMs = await idle;
    expect(answer).to.match(/^HTTP\/1\.1 200 /).and.match(/\r\nKeep-Alive: timeout=1\r\n/i);
    expect(idleMs, 'closed by the gateway after about 1 s idle').to.be.within(500, 5_000);
  });
});
