import { expect } from 'chai';
import { Writable } from 'node:stream';
import { createLogger, recentErrorsOf } from '../../src/log.js';
import { OpsCounters, MINUTES } from '../../src/ops/counters.js';
import { RECENT_ERRORS } from '../../src/ops/recent-errors.js';
import { localDayStart } from '../../src/ops/snapshot.js';
import { describeConfig, loadConfig, redactConfigMessage } from '../../src/config.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';

const OPS = 'duty:correct-horse-battery';
const basic = (userPass: string) => `Basic ${Buffer.from(userPass).toString('base64')}`;

function sink(): { stream: Writable; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      cb();
    },
  });
  return { stream, lines };
}

describe('operations page: parts', () => {
  it('counts per minute for the last hour, forgets older minutes, keeps keys bounded', () => {
    const clock = { t: Date.UTC(2030, 0, 1, 8, 0, 30), now() { return this.t; } };
    const c = new OpsCounters(clock);
    c.count('received', { channel: 'app', status: 'created' }, 1);
    c.count('received', { channel: 'app', status: 'duplicate' }, 1);
    c.count('received', { channel: 'app', status: 'rejected' }, 1);
    c.count('rejected', { channel: 'app', reason: 'empty' }, 1);
    let app = c.channel('app');
    expect(app.received).to.have.length(MINUTES);
    expect(app.received[MINUTES - 1]).to.equal(2);
    expect(app.rejected[MINUTES - 1]).to.equal(1);
    expect(app.lastAcceptedAt).to.equal(clock.t);
    clock.t += 60_000;
    c.count('received', { channel: 'app', status: 'created' }, 1);
    app = c.channel('app');
    expect(app.received.slice(-2)).to.deep.equal([2, 1]);
    clock.t += MINUTES * 60_000;
    expect(c.channel('app').received.every((n) => n === 0)).to.equal(true);
    for (let i = 0; i < 100; i++) c.count('rejected', { channel: 'app', reason: `r${i}` }, 1);
    expect(Object.keys(c.rejectedByReason()).length).to.be.at.most(33);
  });

  it('the error list holds the last warn/error lines exactly as logged (masked), from children too', () => {
    const { stream, lines } = sink();
    const logger = createLogger('info', stream);
    const recent = recentErrorsOf(logger)!;
    logger.info('not an error');
    logger.child({ channel: 'sms' }).warn({ from: '13800138000', mail: 'zhangsan@example.cn' }, 'refused 13912345678');
    expect(lines).to.have.length(2);
    const [e] = recent.list();
    expect(e!.level).to.equal('warn');
    expect(e!.msg).to.equal('refused 139****5678');
    expect(e!.detail).to.contain('138****8000').and.to.contain('z***@example.cn').and.to.contain('"channel":"sms"');
    // The same text the log line holds, nothing more.
    const logged = JSON.parse(lines[1]!) as Record<string, unknown>;
    expect(e!.msg).to.equal(logged.msg);
    for (let i = 0; i < RECENT_ERRORS + 10; i++) logger.error(`e${i}`);
    const list = recent.list();
    expect(list).to.have.length(RECENT_ERRORS);
    expect(list[0]!.msg).to.equal(`e${RECENT_ERRORS + 9}`);
  });

  it('the local day starts at midnight in TIMEZONE', () => {
    const now = Date.UTC(2030, 0, 15, 17, 30); // 01:30 on the 16th in Shanghai
    expect(localDayStart(now, 'Asia/Shanghai')).to.equal(Date.UTC(2030, 0, 15, 16, 0));
    expect(localDayStart(now, 'UTC')).to.equal(Date.UTC(2030, 0, 15, 0, 0));
  });

  it('OPS_USERS is parsed once and never shown with its passwords', () => {
    const c = loadConfig({}, { OPS_USERS: 'duty:correct-horse-battery, night:an0ther:pass' });
    expect([...c.OPS_USERS.entries()]).to.deep.equal([['duty', 'correct-horse-battery'], ['night', 'an0ther:pass']]);
    expect(() => loadConfig({}, { OPS_USERS: 'duty:short' })).to.throw(/OPS_USERS = "duty:\*\*\*"/);
    expect(() => loadConfig({}, { OPS_USERS: 'duty:short' })).not.to.throw(/short/);
    expect(describeConfig(c).OPS_USERS).to.equal('duty:***,night:***');
    expect(redactConfigMessage('bad: correct-horse-battery', c as unknown as Record<string, unknown>)).not.to.contain('correct-horse-battery');
  });
});

describe('operations page: HTTP', function () {
  this.timeout(60_000);
  let tg: TestGateway | null = null;
  afterEach(async () => {
    await tg?.stop();
    tg = null;
  });

  it('is off (404) without OPS_USERS', async () => {
    tg = await startTestGateway({}, { noCollectors: true });
    expect((await fetch(`${tg.baseUrl}/ops`, { headers: { authorization: basic(OPS) } })).status).to.equal(404);
    expect((await fetch(`${tg.baseUrl}/ops/events`)).status).to.equal(404);
  });

  it('asks for basic auth, sends no-store, and caps and closes its streams', async () => {
    tg = await startTestGateway({ OPS_USERS: OPS, OPS_MAX_STREAMS: 2 }, { noCollectors: true });
    const base = tg.baseUrl;
    for (const auth of [undefined, basic('duty:wrong-password'), basic('nobody:correct-horse-battery'), `Bearer ${'ops-key-9876543210'}`]) {
      const r = await fetch(`${base}/ops`, { headers: auth ? { authorization: auth } : {} });
      expect(r.status, String(auth)).to.equal(401);
      expect(r.headers.get('www-authenticate')).to.match(/^Basic realm=/);
      expect(r.headers.get('cache-control')).to.equal('no-store');
      expect(((await r.json()) as { error: { code: string } }).error.code).to.equal('AUTH_FAILED');
    }
    const page = await fetch(`${base}/ops`, { headers: { authorization: basic(OPS) } });
    expect(page.status).to.equal(200);
    expect(page.headers.get('cache-control')).to.equal('no-store');
    expect(page.headers.get('content-security-policy')).to.contain("default-src 'none'");
    const html = await page.text();
    // Nothing fetched from elsewhere: the only URL is the SVG namespace name.
    expect(html).not.to.match(/<script[^>]+src=|<link[^>]+href=|https?:\/\/(?!www\.w3\.org\/2000\/svg")/);

    const snap = await fetch(`${base}/ops/snapshot`, { headers: { authorization: basic(OPS) } });
    expect(snap.headers.get('cache-control')).to.equal('no-store');
    const body = (await snap.json()) as { deadlines: unknown; storeKind: string; outbox: { depth: number } };
    expect(body.deadlines).to.deep.equal({ open: 0, pastWarning: 0, breachedToday: 0, nextDue: null });
    expect(body.storeKind).to.equal('sqlite');

    const streams: AbortController[] = [];
    const open = async () => {
      const ac = new AbortController();
      streams.push(ac);
      return fetch(`${base}/ops/events`, { headers: { authorization: basic(OPS) }, signal: ac.signal });
    };
    const a = await open();
    expect(a.status).to.equal(200);
    expect(a.headers.get('content-type')).to.match(/^text\/event-stream/);
    expect(a.headers.get('cache-control')).to.equal('no-store');
    const reader = a.body!.getReader();
    let text = '';
    while (!text.includes('event: snapshot')) text += Buffer.from((await reader.read()).value ?? []).toString();
    const b = await open();
    expect(b.status).to.equal(200);
    const c = await open();
    expect(c.status).to.equal(503);
    expect(((await c.json()) as { error: { code: string } }).error.code).to.equal('OPS_STREAMS_FULL');
    // A client that goes away frees its place.
    streams[1]!.abort();
    const until = Date.now() + 5000;
    while (tg.gateway.ops!.openStreams !== 1 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    expect(tg.gateway.ops!.openStreams).to.equal(1);
    // Stopping the gateway ends the streams that are left.
    await tg.gateway.stop();
    expect(tg.gateway.ops!.openStreams).to.equal(0);
    for (;;) {
      const r = await reader.read();
      if (r.done) break;
    }
  });
});
