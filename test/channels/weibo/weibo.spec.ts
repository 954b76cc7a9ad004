import { expect } from 'chai';
import { ticketIdFor } from '../../../src/ticket.js';
import { startTestGateway, waitUntil, type TestGateway, sqliteDb } from '../../support/gateway.js';
import { publishJson } from '../../support/rabbit.js';
import { pushToWeibo, startFakeWeibo, verifyWeiboUrl, weiboPushBody, type FakeWeibo } from '../../support/fake-weibo.js';

const SECRET = 'weibo-app-secret-xyz123';
const ACCESS_TOKEN = 'weibo-access-token-abc';

let uidSeq = 9_007_199_254_740_993n; // 2^53 + 1: any pass through a JS number would change it
const nextUid = () => (uidSeq += 2n).toString();

describe('weibo channel (end to end)', function () {
  this.timeout(60_000);
  let fake: FakeWeibo;
  let tg: TestGateway;

  before(async () => {
    fake = await startFakeWeibo({ accessToken: ACCESS_TOKEN });
    tg = await startTestGateway({ WEIBO_APP_SECRET: SECRET, WEIBO_ACCESS_TOKEN: ACCESS_TOKEN, WEIBO_API_URL: fake.url, SEND_MAX_ATTEMPTS: 3 });
  });
  after(async () => {
    await tg?.stop();
    await fake?.close();
  });

  const createdFor = async (sender: string, createdAt: string) => {
    const id = ticketIdFor('weibo', `${sender}:${createdAt}`);
    const [m] = await tg.created.waitFor((x) => x.body.id === id);
    return m!.body;
  };
  const createdAtOf = (body: string) => (JSON.parse(body) as { created_at: string }).created_at;

  it('GET /weibo echoes echostr for a correct millisecond-timestamp signature, 401 otherwise', async () => {
    expect(await verifyWeiboUrl(tg.baseUrl, SECRET, 'echo-123')).to.deep.equal({ status: 200, body: 'echo-123' });
    expect((await verifyWeiboUrl(tg.baseUrl, SECRET, 'echo-123', { badSignature: true })).status).to.equal(401);
    expect((await verifyWeiboUrl(tg.baseUrl, 'other-secret', 'echo-123')).status).to.equal(401);
  });

  it('text push → empty 200, ticket with exact int64 ids, receipt through reply.json', async () => {
    const sender = nextUid();
    const body = weiboPushBody({ type: 'text', senderId: sender, receiverId: '5000000000000000001', text: '地铁站电梯坏了' });
    const r = await pushToWeibo(tg.baseUrl, SECRET, body);
    expect(r).to.deep.equal({ status: 200, body: '' });
    const ticket = await createdFor(sender, createdAtOf(body));
    expect(ticket.channel).to.equal('weibo');
    expect(ticket.citizen.channelUserId).to.equal(sender);
    expect(ticket.source.receiverId).to.equal('5000000000000000001');
    expect(ticket.content).to.equal('地铁站电梯坏了');
    await waitUntil(() => fake.replies.some((x) => x.receiverId === sender), 15_000, 'receipt on reply.json');
    const receipt = fake.replies.find((x) => x.receiverId === sender)!;
    expect(receipt.type).to.equal('text');
    expect(receipt.data.text).to.contain(ticket.number);
    expect(receipt.contentType).to.contain('application/x-www-form-urlencoded');
    expect(receipt.rawBody).to.match(/data=%7B%22text%22%3A%22/);
    const [ack] = await tg.events.waitFor((e) => e.routingKey === 'ticket.acknowledged.weibo' && e.body.ticketId === ticket.id);
    expect(ack!.body.via).to.equal('reply-api');
  });

  it('image, position and voice', async () => {
    const a = nextUid();
    const img = weiboPushBody({ type: 'image', senderId: a, text: '', data: { vfid: 821804459, tovfid: 821804469 } });
    const pos = weiboPushBody({ type: 'position', senderId: a, text: '发送了一个位置', data: { longitude: '116.308586', latitude: '39.982525' } });
    const voice = weiboPushBody({ type: 'voice', senderId: a, text: '发了一个语音消息', data: { vfid: 1, tovfid: 2 } });
    for (const b of [img, pos, voice]) expect((await pushToWeibo(tg.baseUrl, SECRET, b)).status).to.equal(200);
    expect((await createdFor(a, createdAtOf(img))).source).to.include({ type: 'image', vfid: '821804459', tovfid: '821804469' });
    expect((await createdFor(a, createdAtOf(pos))).location).to.deep.equal({ lat: 39.982525, lon: 116.308586, address: null });
    expect((await createdFor(a, createdAtOf(voice))).source.type).to.equal('voice');
  });

  it('a retried push (same sender_id + created_at) gives one ticket', async () => {
    const sender = nextUid();
    const body = weiboPushBody({ type: 'text', senderId: sender, text: '重复推送' });
    await Promise.all([pushToWeibo(tg.baseUrl, SECRET, body), pushToWeibo(tg.baseUrl, SECRET, body)]);
    await pushToWeibo(tg.baseUrl, SECRET, body);
    const t = await createdFor(sender, createdAtOf(body));
    expect(await tg.created.settle((x) => x.body.id === t.id, 500)).to.have.length(1);
  });

  it('wrong or missing signature → 401 and no ticket', async () => {
    const sender = nextUid();
    const body = weiboPushBody({ type: 'text', senderId: sender, text: '伪造' });
    expect((await pushToWeibo(tg.baseUrl, SECRET, body, { badSignature: true })).status).to.equal(401);
    expect((await pushToWeibo(tg.baseUrl, SECRET, body, { noSignature: true })).status).to.equal(401);
    expect(await tg.created.settle((x) => x.body.citizen.channelUserId === sender, 500)).to.have.length(0);
  });

  it('events are not tickets; unknown types are recorded as rejected and acknowledged', async () => {
    const sender = nextUid();
    const ev = weiboPushBody({ type: 'event', senderId: sender, data: { subtype: 'follow', key: '', ticket: '' } });
    expect(await pushToWeibo(tg.baseUrl, SECRET, ev)).to.deep.equal({ status: 200, body: '' });
    const odd = weiboPushBody({ type: 'mention', senderId: sender, text: '@12345' });
    expect(await pushToWeibo(tg.baseUrl, SECRET, odd)).to.deep.equal({ status: 200, body: '' });
    await tg.rejected.waitFor((x) => x.routingKey === 'intake.rejected.weibo' && x.body.reason === 'unsupported_type' && String(x.body.raw).includes(sender));
    expect((await pushToWeibo(tg.baseUrl, SECRET, '{not json')).status).to.equal(200);
    await tg.rejected.waitFor((x) => x.routingKey === 'intake.rejected.weibo' && x.body.reason === 'parse_error');
    expect(await tg.created.settle((x) => x.body.citizen.channelUserId === sender, 300)).to.have.length(0);
  });

  it('downstream replies reach reply.json (HTTP API and tickets.replies queue)', async () => {
    const sender = nextUid();
    const body = weiboPushBody({ type: 'text', senderId: sender, text: '公园垃圾没人清理' });
    await pushToWeibo(tg.baseUrl, SECRET, body);
    const t = await createdFor(sender, createdAtOf(body));
    expect((await tg.post(`/api/v1/tickets/${t.id}/replies`, { replyId: `wb-${sender}`, text: '已通知环卫部门。' })).status).to.equal(202);
    await publishJson(tg.amqpUrl, 'tickets.replies', { ticketId: t.id, replyId: `wbq-${sender}`, text: '环卫已处理完毕。' });
    await waitUntil(() => fake.replies.filter((x) => x.receiverId === sender && !x.data.text?.includes(t.number)).length >= 2, 15_000, 'two replies');
    const texts = fake.replies.filter((x) => x.receiverId === sender).map((x) => x.data.text);
    expect(texts).to.include('已通知环卫部门。').and.include('环卫已处理完毕。');
    await tg.events.waitFor((e) => e.routingKey === 'ticket.responded.weibo' && e.body.ticketId === t.id);
  });

  it('an API error is kept in reply.failed: 21327 (expired token) permanent, 10023 (rate limit) retried', async () => {
    const sender = nextUid();
    const body = weiboPushBody({ type: 'text', senderId: sender, text: '噪音' });
    await pushToWeibo(tg.baseUrl, SECRET, body);
    const t = await createdFor(sender, createdAtOf(body));
    await waitUntil(() => fake.replies.some((x) => x.receiverId === sender), 15_000, 'receipt');
    fake.replyErrors = [{ status: 403, errorCode: 10023, error: 'User requests out of rate limit!' }];
    await tg.post(`/api/v1/tickets/${t.id}/replies`, { replyId: `ok-${sender}`, text: '第一次答复' });
    await waitUntil(() => fake.replies.some((x) => x.receiverId === sender && x.data.text === '第一次答复'), 15_000, 'retried reply');
    fake.replyErrors = [{ status: 400, errorCode: 21327, error: 'expired_token' }];
    await tg.post(`/api/v1/tickets/${t.id}/replies`, { replyId: `bad-${sender}`, text: '第二次答复' });
    const [failed] = await tg.repliesFailed.waitFor((m) => m.body.replyId === `bad-${sender}`);
    expect(JSON.stringify(failed!.body)).to.contain('21327');
  });

  it('store unusable → 503 so Weibo retries; the retry after recovery makes the ticket', async () => {
    const sender = nextUid();
    const body = weiboPushBody({ type: 'text', senderId: sender, text: '存储故障' });
    sqliteDb(tg.gateway).pragma('query_only = ON');
    try {
      expect((await pushToWeibo(tg.baseUrl, SECRET, body)).status).to.equal(503);
    } finally {
      sqliteDb(tg.gateway).pragma('query_only = OFF');
    }
    expect((await pushToWeibo(tg.baseUrl, SECRET, body)).status).to.equal(200);
    await createdFor(sender, createdAtOf(body));
  });
});
