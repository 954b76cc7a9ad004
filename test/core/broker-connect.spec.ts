import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { createLogger } from '../../src/log.js';
import { connectFailure, redact } from '../../src/publish/broker.js';
import { ensureRabbit, RABBIT_HOST, RABBIT_PORT } from '../support/rabbit.js';
import { freePort, startTestGateway, waitUntil, type TestGateway } from '../support/gateway.js';

/** Log lines as parsed JSON, as they would reach the log shipper. */
function captureLog(): { logger: ReturnType<typeof createLogger>; lines: Record<string, unknown>[]; raw: () => string } {
  const lines: Record<string, unknown>[] = [];
  let raw = '';
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      raw += chunk.toString();
      for (const l of chunk.toString().split('\n')) if (l.trim()) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: createLogger('info', stream), lines, raw: () => raw };
}

const FAILED = 'broker connect failed; journaling and retrying';

describe('broker connect failures: logged once, named on /readyz (real RabbitMQ)', function () {
  this.timeout(60_000);
  let tg: TestGateway | null = null;
  before(ensureRabbit);
  afterEach(async () => {
    await tg?.stop();
    tg = null;
  });

  /** A gateway whose AMQP_URL is `url`; no vhost is created (nothing is to be declared). */
  async function start(url: string, log: ReturnType<typeof captureLog>): Promise<TestGateway> {
    return startTestGateway({ AMQP_URL: url, AMQP_RECONNECT_MAX: '300ms' }, { logger: log.logger, noCollectors: true, vhost: { name: 'unused', url, drop: async () => {} } });
  }

  async function readyz(t: TestGateway): Promise<{ status: number; body: Record<string, unknown> }> {
    const res = await fetch(`${t.baseUrl}/readyz`);
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  }

  /** Several attempts have failed (so rate-limiting had something to hold back). */
  async function waitAttempts(t: TestGateway, n: number): Promise<void> {
    await waitUntil(() => (t.gateway.broker as unknown as { attempt: number }).attempt >= n, 20_000, `${n} connect attempts`);
  }

  it('a wrong password: ACCESS_REFUSED on /readyz, one masked log line for many attempts', async () => {
    const password = `wrong-${randomBytes(6).toString('hex')}`;
    const log = captureLog();
    tg = await start(`amqp://guest:${password}@${RABBIT_HOST}:${RABBIT_PORT}`, log);
    await waitAttempts(tg, 5);
    const r = await readyz(tg);
    // Still ready: tickets are journaled until the broker takes them.
    expect(r.status).to.equal(200);
    expect(r.body.broker).to.equal('down');
    expect(r.body.brokerError).to.match(/^ACCESS_REFUSED: login refused/);
    const failed = log.lines.filter((l) => l.msg === FAILED);
    expect(failed, 'one line per reason within the log interval').to.have.length(1);
    expect(failed[0]).to.include({ level: 40, code: 'ACCESS_REFUSED', url: `amqp://guest:***@${RABBIT_HOST}:${RABBIT_PORT}` });
    expect(log.raw()).not.to.contain(password);
    expect(JSON.stringify(r.body)).not.to.contain(password);
  });

  it('a vhost that does not exist: NOT_ALLOWED naming the vhost', async () => {
    const vhost = `no-such-vhost-${randomBytes(4).toString('hex')}`;
    const log = captureLog();
    tg = await start(`amqp://guest:guest@${RABBIT_HOST}:${RABBIT_PORT}/${vhost}`, log);
    await waitAttempts(tg, 4);
    const r = await readyz(tg);
    expect(r.status).to.equal(200);
    expect(r.body.broker).to.equal('down');
    expect(r.body.brokerError).to.equal(`NOT_ALLOWED: vhost "${vhost}" not found, or this user may not use it`);
    const failed = log.lines.filter((l) => l.msg === FAILED);
    expect(failed).to.have.length(1);
    expect(failed[0]).to.include({ code: 'NOT_ALLOWED', url: `amqp://guest:***@${RABBIT_HOST}:${RABBIT_PORT}/${vhost}` });
    expect(log.raw()).not.to.contain('guest:guest');
  });

  it('nobody listening: ECONNREFUSED; brokerError is absent while the broker is up', async () => {
    const port = await freePort();
    const log = captureLog();
    tg = await start(`amqp://guest:guest@127.0.0.1:${port}`, log);
    await waitAttempts(tg, 2);
    const down = await readyz(tg);
    expect(down.body.brokerError).to.match(/^connect ECONNREFUSED 127\.0\.0\.1:\d+$/);
    await tg.stop();

    tg = await startTestGateway({}, { noCollectors: true });
    const gw = tg;
    await waitUntil(() => gw.gateway.broker.state === 'up', 20_000, 'broker up');
    const up = await readyz(gw);
    expect(up.body.broker).to.equal('up');
    expect(up.body).not.to.have.property('brokerError');
  });

  it('names the server reply for other refusals and masks URLs in what it passes on', () => {
    const forced = new Error('Connection closed: 320 (CONNECTION-FORCED) with message "CONNECTION_FORCED - broker forced connection closure with reason \'shutdown\'"');
    expect(connectFailure(forced, 'amqp://u:p@h')).to.deep.equal({ code: 'CONNECTION_FORCED', reason: "CONNECTION_FORCED: broker forced connection closure with reason 'shutdown'" });
    expect(connectFailure(new Error('bad url amqp://u:secret@h/x'), 'amqp://u:secret@h/x').reason).to.equal('bad url amqp://u:***@h/x');
    expect(connectFailure(new Error('Expected ConnectionOpenOk; got <ConnectionClose channel:0>'), 'amqp://h:5672').reason).to.contain('vhost "/"');
    expect(redact('amqp://a:pw1@n1:5672/v,amqp://b:pw2@n2:5672/v')).to.equal('amqp://a:***@n1:5672/v,amqp://b:***@n2:5672/v');
  });
});
