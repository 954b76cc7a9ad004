import { expect } from 'chai';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { connect } from 'node:net';
import { gzipSync } from 'node:zlib';
import { startTestGateway, TEST_API_KEY, waitUntil, type TestGateway, sqliteDb } from '../support/gateway.js';
import { publishJson } from '../support/rabbit.js';
import { TicketV1 } from '../../src/ticket.js';

describe('app API → RabbitMQ (real broker, real sockets)', function () {
  this.timeout(60_000);
  let tg: TestGateway;

  before(async () => {
    tg = await startTestGateway({ APP_RATE_LIMIT: 1000 });
  });
  after(async () => {
    await tg?.stop();
  });

  const post = (body: unknown) => tg.post('/api/v1/tickets', body);

  it('publishes a posted ticket on tickets.created with the contract routing key, properties and headers', async () => {
    const res = await post({
      clientMessageId: 'c-1',
      citizen: { phone: '138 0013 8000', name: '张三' },
      content: '小区停电了，已经两个小时，请尽快处理',
      location: { lat: 36.65, lon: 117.12, address: '历下区经十路5号' },
    });
    expect(res.status).to.equal(202);
    const body = (await res.json()) as { id: string; number: string; respondBy: string };
    expect(body.number).to.match(/^\d{8}-\d{6}$/);
    const [m] = await tg.created.waitFor((x) => x.body.id === body.id);
    expect(m!.routingKey).to.equal('ticket.created.app.help');
    expect(m!.properties.deliveryMode).to.equal(2);
    expect(m!.properties.messageId).to.equal(body.id);
    expect(m!.properties.type).to.equal('ticket.created');
    expect(m!.properties.contentType).to.equal('application/json');
    expect(m!.properties.timestamp).to.be.a('number');
    expect(m!.properties.headers).to.include({ channel: 'app', category: 'help', language: 'zh', emergency: false, schemaVersion: 1 });
    const t = TicketV1.parse(m!.body);
    expect(t.citizen.phone).to.equal('+8613800138000');
    expect(t.location).to.deep.equal({ lat: 36.65, lon: 117.12, address: '历下区经十路5号' });
    expect(t.deadline.policy).to.equal('message');
    expect(t.deadline.duration).to.equal('PT3M');
    expect(Date.parse(t.deadline.respondBy) - Date.parse(t.receivedAt)).to.equal(180_000);
    expect(body.respondBy).to.equal(t.deadline.respondBy);
    const [ack] = await tg.events.waitFor((x) => x.routingKey === 'ticket.acknowledged.app' && x.body.ticketId === body.id);
    expect(ack!.body).to.include({ number: body.number, via: 'http-response' });
  });

  it('answers a repeated clientMessageId with 200, the same body, and no second message', async () => {
    const req = { clientMessageId: 'same-1', citizen: { id: 'u-7' }, content: '建议在路口增设红绿灯' };
    const first = await post(req);
    const second = await post(req);
    expect(first.status).to.equal(202);
    expect(second.status).to.equal(200);
    const a = await first.json();
    expect(await second.json()).to.deep.equal(a);
    const all = await tg.created.settle((x) => x.body.id === (a as { id: string }).id, 1000);
    expect(all).to.have.length(1);
    expect(all[0]!.routingKey).to.equal('ticket.created.app.suggestion');
  });

  it('classifies the hotline examples, flags emergencies and out-of-scope matters, tags the language', async () => {
    const cases: [string, string, string | null, string][] = [
      ['楼下饭店油烟太大，晚上还很吵，我要投诉', 'complaint', null, 'zh'],
      ['请问办理居住证需要哪些材料？', 'consultation', null, 'zh'],
      ['举报某工地夜间违规施工', 'report', null, 'zh'],
      ['感谢环卫工人，街道很干净', 'praise', null, 'zh'],
      ['我家着火了', 'help', '119', 'zh'],
      ['The street light at No. 5 Jingshi Road is broken', 'help', null, 'en'],
    ];
    for (const [i, [content, category, service, language]] of cases.entries()) {
      const res = await post({ clientMessageId: `cls-${i}`, citizen: { id: `cls-user-${i}` }, content });
      const { id } = (await res.json()) as { id: string };
      const [m] = await tg.created.waitFor((x) => x.body.id === id);
      expect(m!.body.category, content).to.equal(category);
      expect(m!.body.emergency?.service ?? null, content).to.equal(service);
      expect(m!.body.language, content).to.equal(language);
      expect(m!.properties.headers!.emergency).to.equal(service !== null);
    }
    const res = await post({ clientMessageId: 'oos-1', citizen: { id: 'oos' }, content: '对法院的判决不服，要求重新审理' });
    const { id } = (await res.json()) as { id: string };
    const [m] = await tg.created.waitFor((x) => x.body.id === id);
    expect(m!.body.outOfScope).to.deep.equal({ reason: 'judicial' });
  });

  it('marks the same citizen reporting the same matter again as repeatOf the first ticket', async () => {
    const a = (await (await post({ clientMessageId: 'rep-1', citizen: { phone: '13900139000' }, content: '幸福小区3号楼电梯坏了三天了，请尽快维修' })).json()) as { id: string };
    const b = (await (await post({ clientMessageId: 'rep-2', citizen: { phone: '13900139000' }, content: '幸福小区3号楼电梯坏了三天了，请尽快维修！！' })).json()) as { id: string };
    const c = (await (await post({ clientMessageId: 'rep-3', citizen: { phone: '13900139000' }, content: '建议在学校门口设置减速带' })).json()) as { id: string };
    const [mb] = await tg.created.waitFor((x) => x.body.id === b.id);
    const [mc] = await tg.created.waitFor((x) => x.body.id === c.id);
    expect(mb!.body.repeatOf).to.equal(a.id);
    expect(mc!.body.repeatOf).to.equal(null);
  });

  it('serves the ticket, its status and its JSON Schema', async () => {
    const { id, number } = (await (await post({ clientMessageId: 'get-1', content: '井盖丢失，很危险' })).json()) as { id: string; number: string };
    // tg.get reads as the downstream system; the app that created the ticket may read it too.
    const t = await (await tg.get(`/api/v1/tickets/${id}`)).json();
    expect(TicketV1.parse(t).number).to.equal(number);
    const own = await tg.get(`/api/v1/tickets/${id}/status`, { authorization: `Bearer ${TEST_API_KEY}` });
    expect(own.status).to.equal(200);
    const st = (await (await tg.get(`/api/v1/tickets/${id}/status`)).json()) as Record<string, unknown>;
    expect(st).to.include({ state: 'acknowledged', breached: false, respondedAt: null });
    expect((await tg.get('/api/v1/tickets/00000000-0000-5000-8000-000000000000')).status).to.equal(404);
    const schema = (await (await fetch(`${tg.baseUrl}/schema/ticket.v1.json`)).json()) as { properties: Record<string, unknown> };
    expect(schema.properties).to.include.keys('id', 'number', 'channel', 'deadline', 'repeatOf', 'source');
  });

  it('sends a reply once per replyId and publishes ticket.responded within the deadline', async () => {
    const { id } = (await (await post({ clientMessageId: 'reply-1', content: '路灯不亮了' })).json()) as { id: string };
    // Replies come from the downstream system (tg.post uses its key for them); the app may not post one.
    expect((await tg.post(`/api/v1/tickets/${id}/replies`, { replyId: 'r-0', text: 'x' }, { authorization: `Bearer ${TEST_API_KEY}` })).status).to.equal(403);
    const r1 = await tg.post(`/api/v1/tickets/${id}/replies`, { replyId: 'r-1', text: '已派单至街道办，今天修复' });
    const r2 = await tg.post(`/api/v1/tickets/${id}/replies`, { replyId: 'r-1', text: '已派单至街道办，今天修复' });
    expect(r1.status).to.equal(202);
    expect(r2.status).to.equal(200);
    expect((await tg.post('/api/v1/tickets/00000000-0000-5000-8000-000000000000/replies', { replyId: 'x', text: 'y' })).status).to.equal(404);
    const [ev] = await tg.events.waitFor((x) => x.routingKey === 'ticket.responded.app' && x.body.ticketId === id);
    expect(ev!.body).to.include({ replyId: 'r-1', withinDeadline: true });
    expect(ev!.body.latencyMs).to.be.a('number');
    const again = await tg.events.settle((x) => x.routingKey === 'ticket.responded.app' && x.body.ticketId === id, 800);
    expect(again).to.have.length(1);
    const st = (await (await tg.get(`/api/v1/tickets/${id}/status`)).json()) as { state: string; replies: { replyId: string }[] };
    expect(st.state).to.equal('responded');
    expect(st.replies.map((r) => r.replyId)).to.deep.equal(['r-1']);
  });

  it('takes replies from the tickets.replies queue, and refuses unknown tickets with reply.failed', async () => {
    const { id } = (await (await post({ clientMessageId: 'reply-q', content: '垃圾没人清运' })).json()) as { id: string };
    await publishJson(tg.amqpUrl, 'tickets.replies', { ticketId: id, replyId: 'q-1', text: '已安排清运' });
    await tg.events.waitFor((x) => x.routingKey === 'ticket.responded.app' && x.body.replyId === 'q-1');
    await publishJson(tg.amqpUrl, 'tickets.replies', { ticketId: '00000000-0000-5000-8000-000000000000', replyId: 'q-2', text: 'x' });
    const [f] = await tg.repliesFailed.waitFor((x) => x.body.replyId === 'q-2');
    expect(f!.body.error.code).to.equal('NOT_FOUND');
  });

  describe('bad input (contract section 5)', () => {
    it('invalid JSON → 400 with error code, message and issues', async () => {
      const r = await tg.post('/api/v1/tickets', '{"clientMessageId": ');
      expect(r.status).to.equal(400);
      const b = (await r.json()) as { error: { code: string; message: string; issues: unknown[] } };
      expect(b.error.code).to.equal('INPUT_INVALID');
      expect(b.error.issues).to.be.an('array');
    });
    it('schema violation → 400 naming the fields', async () => {
      const r = await post({ clientMessageId: '', content: 5 });
      expect(r.status).to.equal(400);
      const b = (await r.json()) as { error: { issues: { path: string }[] } };
      expect(b.error.issues.map((i) => i.path)).to.include.members(['clientMessageId', 'content']);
    });
    it('missing or wrong API key → 401', async () => {
      const r1 = await fetch(`${tg.baseUrl}/api/v1/tickets`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
      const r2 = await tg.post('/api/v1/tickets', {}, { authorization: 'Bearer nope' });
      expect([r1.status, r2.status]).to.deep.equal([401, 401]);
      expect((await tg.get('/api/v1/tickets/x', { authorization: '' })).status).to.equal(401);
    });
    it('unknown ticket → 404', async () => {
      expect((await tg.get('/api/v1/tickets/not-a-ticket')).status).to.equal(404);
    });
    it('JSON body over 1 MB → 413', async () => {
      const r = await post({ clientMessageId: 'big', content: 'x'.repeat(1_100_000) });
      expect(r.status).to.equal(413);
    });
    it('wrong content type → 415', async () => {
      const r = await fetch(`${tg.baseUrl}/api/v1/tickets`, { method: 'POST', headers: { 'content-type': 'text/plain', authorization: `Bearer ${TEST_API_KEY}` }, body: 'hello' });
      expect(r.status).to.equal(415);
    });
    it('empty content and no attachment → 422 asking for details, and intake.rejected', async () => {
      const r = await post({ clientMessageId: 'empty-1', content: '   ' });
      expect(r.status).to.equal(422);
      expect(((await r.json()) as { error: { message: string } }).error.message).to.contain('补充');
      const [m] = await tg.rejected.waitFor((x) => x.routingKey === 'intake.rejected.app' && x.body.reason === 'empty');
      expect(m!.body).to.include.keys('channel', 'reason', 'detail', 'receivedAt', 'raw');
    });
    it('no stack traces or internals in answers', async () => {
      const r = await tg.post('/api/v1/tickets', '{"a":');
      const text = await r.text();
      expect(text).not.to.match(/at .*\.(ts|js):\d+/);
      expect(text).not.to.contain('node_modules');
    });
  });

  describe('Open311 GeoReport v2', () => {
    it('lists services without a key and creates a request with a form-encoded POST', async () => {
      const services = (await (await fetch(`${tg.baseUrl}/open311/v2/services.json`)).json()) as { service_code: string }[];
      expect(services.map((s) => s.service_code)).to.include.members(['help', 'complaint']);
      const form = new URLSearchParams({ api_key: TEST_API_KEY, service_code: 'help', lat: '36.66', long: '117.02', description: '人行道地砖松动', email: 'li@example.cn' });
      const r = await fetch(`${tg.baseUrl}/open311/v2/requests.json`, { method: 'POST', body: form });
      expect(r.status).to.equal(201);
      const [created] = (await r.json()) as { service_request_id: string }[];
      expect(created!.service_request_id).to.match(/^\d{8}-\d{6}$/);
      const [m] = await tg.created.waitFor((x) => x.body.number === created!.service_request_id);
      expect(m!.body.channel).to.equal('app');
      expect(m!.body.source.open311).to.include({ service_code: 'help' });
      const one = (await (await fetch(`${tg.baseUrl}/open311/v2/requests/${created!.service_request_id}.json?api_key=${TEST_API_KEY}`)).json()) as { status: string }[];
      expect(one).to.have.length(1);
      expect(one[0]!.status).to.equal('open');
    });
    it('refuses a missing api_key with 403 and [{code, description}]', async () => {
      const r = await fetch(`${tg.baseUrl}/open311/v2/requests.json`, { method: 'POST', body: new URLSearchParams({ service_code: 'help', lat: '1', long: '1' }) });
      expect(r.status).to.equal(403);
      const b = (await r.json()) as { code: number; description: string }[];
      expect(b[0]!.code).to.equal(403);
    });
    it('refuses a request without a location with 400', async () => {
      const r = await fetch(`${tg.baseUrl}/open311/v2/requests.json`, { method: 'POST', body: new URLSearchParams({ api_key: TEST_API_KEY, service_code: 'help', description: 'x' }) });
      expect(r.status).to.equal(400);
    });
  });

  describe('store unusable', () => {
    it('refuses with 503 (nothing acknowledged), /readyz says why, and recovers', async () => {
      const db = sqliteDb(tg.gateway);
      db.pragma('query_only = ON');
      try {
        const r = await post({ clientMessageId: 'ro-1', content: '路灯坏了' });
        expect(r.status).to.equal(503);
        expect(r.headers.get('retry-after')).to.equal('1');
        const ready = await fetch(`${tg.baseUrl}/readyz`);
        expect(ready.status).to.equal(503);
        const body = (await ready.json()) as { reasons: string[]; store: string };
        expect(body.store).to.equal('unusable');
        expect(body.reasons.join(' ')).to.contain('store unusable');
      } finally {
        db.pragma('query_only = OFF');
      }
      const again = await post({ clientMessageId: 'ro-1', content: '路灯坏了' });
      expect(again.status).to.equal(202);
      expect((await fetch(`${tg.baseUrl}/readyz`)).status).to.equal(200);
    });
  });

  describe('ops endpoints', () => {
    it('healthz, readyz with broker state and backlog, Prometheus metrics', async () => {
      expect((await fetch(`${tg.baseUrl}/healthz`)).status).to.equal(200);
      const ready = (await (await fetch(`${tg.baseUrl}/readyz`)).json()) as Record<string, unknown>;
      expect(ready).to.include({ ready: true, broker: 'up', store: 'ok' });
      expect(ready.backlog).to.be.a('number');
      const metrics = await (await fetch(`${tg.baseUrl}/metrics`)).text();
      expect(metrics).to.contain('gateway_messages_received_total');
      expect(metrics).to.contain('gateway_confirm_latency_seconds_bucket');
      expect(metrics).to.contain('gateway_outbox_depth');
    });
  });
});

describe('app API rate limit', function () {
  this.timeout(30_000);
  it('answers 429 with Retry-After over APP_RATE_LIMIT', async () => {
    const tg = await startTestGateway({ APP_RATE_LIMIT: 3 }, { noCollectors: true });
    try {
      const statuses: number[] = [];
      let retryAfter: string | null = null;
      for (let i = 0; i < 6; i++) {
        const r = await tg.post('/api/v1/tickets', { clientMessageId: `rl-${i}`, content: '噪音扰民' });
        statuses.push(r.status);
        if (r.status === 429) retryAfter = r.headers.get('retry-after');
      }
      expect(statuses).to.include(429);
      expect(Number(retryAfter)).to.be.greaterThan(0);
    } finally {
      await tg.stop();
    }
  });
});

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** One request over node:http; `body` as an array is sent chunked (no Content-Length). */
function send(port: number, path: string, headers: Record<string, string | undefined>, body: string | Buffer | Buffer[] = '', expectContinue = false): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const h: Record<string, string> = {};
    for (const [k, v] of Object.entries(headers)) if (v !== undefined) h[k] = v;
    if (!Array.isArray(body)) h['content-length'] = String(Buffer.byteLength(body));
    const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path, headers: h, agent: false }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: flat(res.headers), body: Buffer.concat(parts).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    const write = () => {
      if (Array.isArray(body)) for (const b of body) req.write(b);
      else req.write(body);
      req.end();
    };
    if (expectContinue) req.on('continue', write);
    else write();
  });
}

function flat(headers: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined) out[k] = Array.isArray(v) ? v.join(', ') : v;
  return out;
}

/** Raw bytes on one socket, written with pauses between parts; every response read until the server closes. */
function rawExchange(port: number, parts: (string | Buffer)[], between: (i: number) => Promise<void> = () => new Promise((r) => setTimeout(r, 50))): Promise<Answer[]> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1');
    const got: Buffer[] = [];
    sock.on('data', (c) => got.push(c));
    sock.on('error', reject);
    sock.on('close', () => resolve(parseResponses(Buffer.concat(got))));
    void (async () => {
      for (const [i, p] of parts.entries()) {
        if (i > 0) await between(i);
        sock.write(p);
      }
    })();
  });
}

function parseResponses(buf: Buffer): Answer[] {
  const out: Answer[] = [];
  let at = 0;
  while (at < buf.length) {
    const end = buf.indexOf('\r\n\r\n', at);
    if (end < 0) break;
    const [statusLine, ...lines] = buf.subarray(at, end).toString('latin1').split('\r\n');
    const headers: Record<string, string> = {};
    for (const l of lines) headers[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim();
    const len = Number(headers['content-length'] ?? 0);
    out.push({ status: Number(statusLine!.split(' ')[1]), headers, body: buf.subarray(end + 4, end + 4 + len).toString('utf8') });
    at = end + 4 + len;
  }
  return out;
}

/** What a client can tell apart: everything but the clock. */
function observable(a: Answer): Answer {
  const { date: _date, ...headers } = a.headers;
  return { status: a.status, headers, body: a.body };
}

async function rejectedCounts(tg: TestGateway): Promise<Record<string, number>> {
  const m = await tg.gateway.metrics.httpRejected.get();
  return Object.fromEntries(m.values.map((v) => [String(v.labels.code), v.value]));
}

function delta(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) if (v !== (before[k] ?? 0)) out[k] = v - (before[k] ?? 0);
  return out;
}

describe('app API: the fast path answers exactly as the Express route does', function () {
  this.timeout(60_000);
  const LIMIT = 2048;
  let tg: TestGateway;
  let port: number;
  const auth = `Bearer ${TEST_API_KEY}`;
  const JSON_TYPE = 'application/json';
  const FAST = '/api/v1/tickets';
  // The same route with a query string is left to Express.
  const EXPRESS = '/api/v1/tickets?via=express';

  before(async () => {
    tg = await startTestGateway({ APP_RATE_LIMIT: 1000, HTTP_JSON_LIMIT: LIMIT });
    port = tg.gateway.port;
  });
  after(async () => {
    await tg?.stop();
  });

  /** A valid body padded with JSON whitespace to exactly `n` bytes. */
  const sized = (id: string, n: number) => {
    const b = ticket(id);
    return b + ' '.repeat(n - Buffer.byteLength(b));
  };

  /** Sends the same request down both paths: same answer, same metrics. */
  async function both(headers: Record<string, string | undefined>, body: string | Buffer | Buffer[] = ''): Promise<Answer> {
    const m0 = await rejectedCounts(tg);
    const fast = await send(port, FAST, headers, body);
    const m1 = await rejectedCounts(tg);
    const viaExpress = await send(port, EXPRESS, headers, body);
    const m2 = await rejectedCounts(tg);
    expect(observable(fast)).to.deep.equal(observable(viaExpress));
    expect(delta(m0, m1), 'gateway_http_rejected_total').to.deep.equal(delta(m1, m2));
    return fast;
  }

  const errorOf = (a: Answer) => (JSON.parse(a.body) as { error: { code: string; message: string; issues: { path: string }[] } }).error;

  it('a new ticket: 202 with id, number and respondBy, then 200 with the same body on either path', async () => {
    const first = await send(port, FAST, { 'content-type': JSON_TYPE, authorization: auth }, ticket('fp-new'));
    expect(first.status).to.equal(202);
    expect(first.headers['content-type']).to.equal('application/json; charset=utf-8');
    expect(first.headers.etag).to.match(/^W\/"[0-9a-f]+-[A-Za-z0-9+/]{27}"$/);
    const b = JSON.parse(first.body) as { id: string; number: string; respondBy: string };
    expect(Object.keys(b)).to.deep.equal(['id', 'number', 'respondBy']);
    const again = await both({ 'content-type': JSON_TYPE, authorization: auth }, ticket('fp-new'));
    expect(again.status).to.equal(200);
    expect(JSON.parse(again.body)).to.deep.equal(b);
    const [m] = await tg.created.waitFor((x) => x.body.id === b.id);
    expect(m!.body.channel).to.equal('app');
    const [ack] = await tg.events.waitFor((x) => x.routingKey === 'ticket.acknowledged.app' && x.body.ticketId === b.id);
    expect(ack!.body).to.include({ via: 'http-response' });
  });

  it('a new ticket through Express (query string) is 202 too, and the fast path then sees the duplicate', async () => {
    const first = await send(port, EXPRESS, { 'content-type': JSON_TYPE, authorization: auth }, ticket('fp-q'));
    expect(first.status).to.equal(202);
    const again = await send(port, FAST, { 'content-type': JSON_TYPE, authorization: auth }, ticket('fp-q'));
    expect(again.status).to.equal(200);
    expect(again.body).to.equal(first.body);
  });

  it('keeps the raw body bytes (BOM, spacing, chunking) for the journal, as body-parser does', async () => {
    const body = `\ufeff \n${ticket('fp-raw', { subject: '报修' })}\t`;
    const chunks = [Buffer.from(body).subarray(0, 7), Buffer.from(body).subarray(7)];
    const r = await send(port, FAST, { 'content-type': 'Application/JSON ; Charset="UTF-8"', authorization: auth }, chunks);
    expect(r.status).to.equal(202);
    const { id } = JSON.parse(r.body) as { id: string };
    const [m] = await tg.created.waitFor((x) => x.body.id === id);
    expect(m!.body.subject).to.equal('报修');
    const again = await both({ 'content-type': JSON_TYPE, authorization: auth }, body);
    expect(again.status).to.equal(200);
  });

  it('bad bodies: invalid JSON, top-level string, number, null or whitespace → 400 "body is not valid JSON"', async () => {
    for (const body of ['{"clientMessageId": ', '"a ticket"', '42', 'null', ' \n\t ', '\ufeff"x"', '{"a":1} x']) {
      const r = await both({ 'content-type': JSON_TYPE, authorization: auth }, body);
      expect(r.status, body).to.equal(400);
      expect(errorOf(r)).to.deep.equal({ code: 'INPUT_INVALID', message: 'body is not valid JSON', issues: [] });
    }
  });

  it('an empty body is {} and an array is parsed: 400 naming the schema fields', async () => {
    for (const body of ['', '\ufeff', '[]', ' [1]', JSON.stringify({ clientMessageId: '', content: 5 })]) {
      const r = await both({ 'content-type': JSON_TYPE, authorization: auth }, body);
      expect(r.status, body).to.equal(400);
      const e = errorOf(r);
      expect(e.message, body).to.equal('request does not match the schema');
      expect(e.issues.length, body).to.be.greaterThan(0);
    }
  });

  it('empty content → 422 on both paths', async () => {
    const r = await both({ 'content-type': JSON_TYPE, authorization: auth }, JSON.stringify({ clientMessageId: 'fp-empty', content: ' ' }));
    expect(r.status).to.equal(422);
    expect(errorOf(r).code).to.equal('EMPTY_CONTENT');
  });

  it('missing, malformed or unknown API key → 401 AUTH_FAILED', async () => {
    for (const authorization of [undefined, 'nope', `bearer ${TEST_API_KEY}`, 'Bearer nope', 'Bearer ']) {
      const r = await both({ 'content-type': JSON_TYPE, authorization }, ticket('fp-401'));
      expect(r.status, authorization).to.equal(401);
      expect(errorOf(r)).to.deep.equal({ code: 'AUTH_FAILED', message: 'missing or invalid API key', issues: [] });
    }
  });

  it('a type other than application/json, or none → 415 INPUT_UNSUPPORTED', async () => {
    for (const type of ['text/plain', 'application/jsonx', 'application/json x', 'application/vnd.api+json', 'application/json, text/plain', 'text/plain; charset=latin1', undefined]) {
      const r = await both({ 'content-type': type, authorization: auth }, ticket('fp-415'));
      expect(r.status, type).to.equal(415);
      expect(errorOf(r)).to.deep.equal({ code: 'INPUT_UNSUPPORTED', message: 'expected Content-Type: application/json', issues: [] });
    }
  });

  it('a POST without any body framing (no Content-Length, no Transfer-Encoding) → 415, as req.is() says', async () => {
    const head = (path: string) => `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: ${auth}\r\nConnection: close\r\n\r\n`;
    const [fast] = await rawExchange(port, [head(FAST)]);
    const [viaExpress] = await rawExchange(port, [head(EXPRESS)]);
    expect(fast!.status).to.equal(415);
    expect(observable(fast!)).to.deep.equal(observable(viaExpress!));
  });

  it('charsets other than UTF-8 and other parameters go to Express: latin1 → 415, utf-16 is decoded', async () => {
    const latin1 = await send(port, FAST, { 'content-type': 'application/json; charset=latin1', authorization: auth }, ticket('fp-latin1'));
    expect(latin1.status).to.equal(415);
    expect(errorOf(latin1)).to.deep.equal({ code: 'INPUT_UNSUPPORTED', message: 'unsupported charset "LATIN1"', issues: [] });
    const utf16 = await send(port, FAST, { 'content-type': 'application/json; charset=utf-16le', authorization: auth }, Buffer.from(ticket('fp-utf16'), 'utf16le'));
    expect(utf16.status).to.equal(202);
    const extraType = { 'content-type': 'application/json; charset=utf-8; v=1', authorization: auth };
    expect((await send(port, FAST, extraType, ticket('fp-extra'))).status).to.equal(202);
    expect((await both(extraType, ticket('fp-extra'))).status).to.equal(200);
  });

  it('a gzip-encoded body goes to Express and is inflated: 202', async () => {
    const r = await send(port, FAST, { 'content-type': JSON_TYPE, 'content-encoding': 'gzip', authorization: auth }, gzipSync(ticket('fp-gzip')));
    expect(r.status).to.equal(202);
    const { id } = JSON.parse(r.body) as { id: string };
    const [m] = await tg.created.waitFor((x) => x.body.id === id);
    expect(m!.body.content).to.contain('fp-gzip');
    const again = await both({ 'content-type': JSON_TYPE, 'content-encoding': 'identity', authorization: auth }, ticket('fp-gzip'));
    expect(again.status).to.equal(200);
  });

  it('Expect: 100-continue goes to Express and works', async () => {
    const r = await send(port, FAST, { 'content-type': JSON_TYPE, authorization: auth, expect: '100-continue' }, ticket('fp-continue'), true);
    expect(r.status).to.equal(202);
  });

  it('the body limit: exactly the limit is taken, one byte more → 413, by Content-Length or chunked', async () => {
    const ok = await send(port, FAST, { 'content-type': JSON_TYPE, authorization: auth }, sized('fp-limit', LIMIT));
    expect(ok.status).to.equal(202);
    const okChunked = await send(port, FAST, { 'content-type': JSON_TYPE, authorization: auth }, [Buffer.from(sized('fp-limit-c', LIMIT))]);
    expect(okChunked.status).to.equal(202);
    const over = await both({ 'content-type': JSON_TYPE, authorization: auth }, sized('fp-over', LIMIT + 1));
    expect(over.status).to.equal(413);
    expect(errorOf(over)).to.deep.equal({ code: 'INPUT_TOO_LARGE', message: 'request body is too large', issues: [] });
    const body = Buffer.from(sized('fp-over-c', 5 * LIMIT));
    const chunks = [body.subarray(0, 1000), body.subarray(1000, LIMIT + 1), body.subarray(LIMIT + 1)];
    const overChunked = await both({ 'content-type': JSON_TYPE, authorization: auth }, chunks);
    expect(overChunked.status).to.equal(413);
    // Invalid JSON over the limit is still 413: the size is checked first.
    expect((await both({ 'content-type': JSON_TYPE, authorization: auth }, '{'.repeat(LIMIT + 1))).status).to.equal(413);
  });

  it('the connection stays usable after a 413 and after a refusal with an unread body', async () => {
    const head = (len: number, key: string) => `POST ${FAST} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer ${key}\r\nContent-Length: ${len}\r\n\r\n`;
    const big = 'x'.repeat(LIMIT + 10);
    const last = ticket('fp-keepalive');
    const answers = await rawExchange(port, [
      head(big.length, TEST_API_KEY) + big,
      head(big.length, 'nope') + big,
      head(Buffer.byteLength(last), TEST_API_KEY).replace('\r\n\r\n', '\r\nConnection: close\r\n\r\n') + last,
    ]);
    expect(answers.map((a) => a.status)).to.deep.equal([413, 401, 202]);
  });

  it('a client that goes away mid-body is counted as a 400 and the gateway carries on', async () => {
    const before = await rejectedCounts(tg);
    await new Promise<void>((resolve) => {
      const sock = connect(port, '127.0.0.1', () => {
        sock.write(`POST ${FAST} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: ${auth}\r\nContent-Length: 500\r\n\r\n{"clientMessageId":`);
        setTimeout(() => sock.destroy(), 100);
      });
      sock.on('close', () => resolve());
      sock.on('error', () => {});
    });
    await waitUntil(async () => ((await rejectedCounts(tg)).INPUT_INVALID ?? 0) > (before.INPUT_INVALID ?? 0), 5000, 'the aborted request counted');
    expect((await send(port, FAST, { 'content-type': JSON_TYPE, authorization: auth }, ticket('fp-after-abort'))).status).to.equal(202);
  });

  it('store unusable: 503 with Retry-After: 1 on both paths', async () => {
    const db = sqliteDb(tg.gateway);
    db.pragma('query_only = ON');
    try {
      const r = await both({ 'content-type': JSON_TYPE, authorization: auth }, ticket('fp-ro'));
      expect(r.status).to.equal(503);
      expect(r.headers['retry-after']).to.equal('1');
      expect(errorOf(r).code).to.equal('STORE_UNAVAILABLE');
    } finally {
      db.pragma('query_only = OFF');
    }
  });

  it('429 with the rate limiter\'s Retry-After on both paths', async () => {
    const limited = await startTestGateway({ APP_RATE_LIMIT: 1 }, { noCollectors: true });
    try {
      const p = limited.gateway.port;
      const h = { 'content-type': JSON_TYPE, authorization: auth };
      expect((await send(p, FAST, h, ticket('rl-0'))).status).to.equal(202);
      const fast = await send(p, FAST, h, ticket('rl-1'));
      const viaExpress = await send(p, EXPRESS, h, ticket('rl-1'));
      expect(fast.status).to.equal(429);
      expect(fast.headers['retry-after']).to.equal('1');
      expect(observable(fast)).to.deep.equal(observable(viaExpress));
      expect(errorOf(fast)).to.deep.equal({ code: 'RATE_LIMITED', message: 'too many requests for this API key', issues: [] });
    } finally {
      await limited.stop();
    }
  });
});

describe('app API while the gateway stops', function () {
  this.timeout(60_000);

  it('a body finishing after stop began → 503 SHUTTING_DOWN with Retry-After; a new request → 503 with Connection: close', async () => {
    const tg = await startTestGateway({}, { noCollectors: true });
    try {
      const port = tg.gateway.port;
      const body = ticket('stop-1');
      const head = (path: string, extra = '') =>
        `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer ${TEST_API_KEY}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n`;
      let stopping: Promise<void> | undefined;
      const exchange = (path: string) =>
        rawExchange(port, [head(path) + body.slice(0, 10), body.slice(10) + head('/api/v1/tickets', 'Connection: close\r\n') + body], async () => {
          await new Promise((r) => setTimeout(r, 150));
          stopping ??= tg.gateway.stop();
          await new Promise((r) => setTimeout(r, 50));
        });
      const [fast, viaExpress] = await Promise.all([exchange('/api/v1/tickets'), exchange('/api/v1/tickets?via=express')]);
      await stopping;
      for (const answers of [fast, viaExpress]) {
        expect(answers.map((a) => a.status)).to.deep.equal([503, 503]);
        const [inFlight, fresh] = answers as [Answer, Answer];
        expect(JSON.parse(inFlight.body)).to.deep.equal({ error: { code: 'SHUTTING_DOWN', message: 'gateway is shutting down', issues: [] } });
        expect(inFlight.headers['retry-after']).to.equal('1');
        expect(JSON.parse(fresh.body)).to.deep.equal({ error: { code: 'SHUTTING_DOWN', message: 'gateway is shutting down', issues: [] } });
        expect(fresh.headers.connection).to.equal('close');
      }
      expect(observable(fast[0]!)).to.deep.equal(observable(viaExpress[0]!));
      expect(observable(fast[1]!)).to.deep.equal(observable(viaExpress[1]!));
    } finally {
      await tg.stop();
    }
  });
});

function ticket(id: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ clientMessageId: id, citizen: { id: `u-${id}` }, content: `路灯不亮 ${id}`, ...extra });
}
