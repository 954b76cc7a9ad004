import { expect } from 'chai';
import { startTestGateway, TEST_API_KEY, type TestGateway } from '../support/gateway.js';
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
      ['我家着火了', 'unknown', '119', 'zh'],
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
    const t = await (await tg.get(`/api/v1/tickets/${id}`)).json();
    expect(TicketV1.parse(t).number).to.equal(number);
    const st = (await (await tg.get(`/api/v1/tickets/${id}/status`)).json()) as Record<string, unknown>;
    expect(st).to.include({ state: 'acknowledged', breached: false, respondedAt: null });
    expect((await tg.get('/api/v1/tickets/00000000-0000-5000-8000-000000000000')).status).to.equal(404);
    const schema = (await (await fetch(`${tg.baseUrl}/schema/ticket.v1.json`)).json()) as { properties: Record<string, unknown> };
    expect(schema.properties).to.include.keys('id', 'number', 'channel', 'deadline', 'repeatOf', 'source');
  });

  it('sends a reply once per replyId and publishes ticket.responded within the deadline', async () => {
    const { id } = (await (await post({ clientMessageId: 'reply-1', content: '路灯不亮了' })).json()) as { id: string };
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
      const db = tg.gateway.store.db;
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
