import { expect } from 'chai';
import { ticketIdFor } from '../../../src/ticket.js';
import { startTestGateway, waitUntil, type TestGateway, sqliteDb } from '../../support/gateway.js';
import { publishJson } from '../../support/rabbit.js';
import { makeUpdate, postWebhook, startFakeTelegram, type FakeTelegram } from '../../support/fake-telegram.js';

const BOT_TOKEN = '123456789:AAtest-token_for-the-fake-bot-api';
const SECRET = 'webhook-secret_0123456789';

describe('telegram channel, webhook mode (end to end)', function () {
  this.timeout(60_000);
  let fake: FakeTelegram;
  let tg: TestGateway;

  before(async () => {
    fake = await startFakeTelegram({ token: BOT_TOKEN });
    tg = await startTestGateway({
      TELEGRAM_BOT_TOKEN: BOT_TOKEN,
      TELEGRAM_WEBHOOK_SECRET: SECRET,
      TELEGRAM_API_URL: fake.url,
      TELEGRAM_MEDIA_TIMEOUT: '1500ms',
      PUBLIC_URL: 'https://hotline.example.gov.cn',
      SEND_MAX_ATTEMPTS: 3,
    });
  });
  after(async () => {
    await tg?.stop();
    await fake?.close();
  });

  const createdFor = async (updateId: number) => {
    const id = ticketIdFor('telegram', String(updateId));
    const [m] = await tg.created.waitFor((x) => x.body.id === id);
    return m!.body;
  };

  it('registers the webhook with the secret token when PUBLIC_URL is set', async () => {
    await waitUntil(() => fake.webhook !== null, 10_000, 'setWebhook');
    expect(fake.webhook).to.deep.equal({ url: 'https://hotline.example.gov.cn/telegram/webhook', secretToken: SECRET });
  });

  it('wrong or missing secret token → 401 and no ticket', async () => {
    const u = makeUpdate({ text: '伪造' });
    expect((await postWebhook(tg.baseUrl, 'wrong-secret', u)).status).to.equal(401);
    expect((await postWebhook(tg.baseUrl, null, u)).status).to.equal(401);
    const form = await fetch(`${tg.baseUrl}/telegram/webhook`, { method: 'POST', headers: { 'X-Telegram-Bot-Api-Secret-Token': SECRET, 'Content-Type': 'text/plain' }, body: JSON.stringify(u) });
    expect(form.status).to.equal(415);
    expect(await tg.created.settle((x) => x.body.id === ticketIdFor('telegram', String(u.update_id)), 500)).to.have.length(0);
  });

  it('text → ticket after 200, receipt with sendMessage naming the number', async () => {
    const u = makeUpdate({ text: '人民路与解放路交叉口红绿灯不亮' }, { userId: 4_000_000_000_001, firstName: 'Zhang' });
    const r = await postWebhook(tg.baseUrl, SECRET, u);
    expect(r.status).to.equal(200);
    const t = await createdFor(u.update_id as number);
    expect(t.channel).to.equal('telegram');
    expect(t.content).to.equal('人民路与解放路交叉口红绿灯不亮');
    expect(t.citizen).to.include({ channelUserId: '4000000000001', name: 'Zhang' });
    expect(t.source.chatId).to.equal('4000000000001');
    await waitUntil(() => fake.sent.some((s) => s.chatId === '4000000000001' && s.text.includes(t.number)), 15_000, 'receipt');
    const [ack] = await tg.events.waitFor((e) => e.routingKey === 'ticket.acknowledged.telegram' && e.body.ticketId === t.id);
    expect(ack!.body.via).to.equal('sendMessage');
  });

  it('a redelivered update_id is one ticket', async () => {
    const u = makeUpdate({ text: '重复投递' });
    await Promise.all([postWebhook(tg.baseUrl, SECRET, u), postWebhook(tg.baseUrl, SECRET, u)]);
    expect((await postWebhook(tg.baseUrl, SECRET, u)).status).to.equal(200);
    const t = await createdFor(u.update_id as number);
    expect(await tg.created.settle((x) => x.body.id === t.id, 500)).to.have.length(1);
  });

  it('photo: getFile + download → attachment; caption is the content', async () => {
    const png = Buffer.concat([Buffer.from('\x89PNG\r\n\x1a\n', 'latin1'), Buffer.alloc(500, 1)]);
    fake.files.set('PHOTO_BIG', { data: png, filePath: 'photos/file_10.png' });
    const u = makeUpdate({
      caption: '路面坑洼',
      photo: [
        { file_id: 'PHOTO_SMALL', file_unique_id: 's', width: 90, height: 60, file_size: 100 },
        { file_id: 'PHOTO_BIG', file_unique_id: 'b', width: 1280, height: 853, file_size: png.length },
      ],
    });
    expect((await postWebhook(tg.baseUrl, SECRET, u)).status).to.equal(200);
    const t = await createdFor(u.update_id as number);
    expect(t.content).to.equal('路面坑洼');
    expect(t.attachments).to.have.length(1);
    expect(t.attachments[0]).to.include({ fileName: 'file_10.png', mimeType: 'image/png', size: png.length });
    expect(fake.calls.some((c) => c.method === 'getFile' && c.params.file_id === 'PHOTO_BIG')).to.equal(true);
  });

  it('a failed photo download still makes the ticket, with source.mediaError', async () => {
    fake.files.set('PHOTO_GONE', { data: Buffer.alloc(10), filePath: 'photos/file_11.jpg', downloadStatus: 500 });
    const u = makeUpdate({ photo: [{ file_id: 'PHOTO_GONE', file_unique_id: 'g', width: 10, height: 10, file_size: 10 }] });
    expect((await postWebhook(tg.baseUrl, SECRET, u)).status).to.equal(200);
    const t = await createdFor(u.update_id as number);
    expect(t.attachments).to.have.length(0);
    expect(t.source.mediaError).to.match(/500/);
  });

  it('location and contact (phone → citizen.phone)', async () => {
    const loc = makeUpdate({ location: { latitude: 36.651216, longitude: 117.12 } });
    const contact = makeUpdate({ contact: { phone_number: '8613800138000', first_name: 'Wang', user_id: 4_000_000_000_123 } });
    for (const u of [loc, contact]) expect((await postWebhook(tg.baseUrl, SECRET, u)).status).to.equal(200);
    expect((await createdFor(loc.update_id as number)).location).to.deep.equal({ lat: 36.651216, lon: 117.12, address: null });
    expect((await createdFor(contact.update_id as number)).citizen.phone).to.equal('+8613800138000');
  });

  it('/start gets a welcome, unsupported types are rejected, other updates are ignored', async () => {
    const start = makeUpdate({ text: '/start' }, { userId: 4_000_000_000_777 });
    expect((await postWebhook(tg.baseUrl, SECRET, start)).status).to.equal(200);
    await waitUntil(() => fake.sent.some((s) => s.chatId === '4000000000777'), 10_000, 'welcome');
    const sticker = makeUpdate({ sticker: { file_id: 'STK' } });
    expect((await postWebhook(tg.baseUrl, SECRET, sticker)).status).to.equal(200);
    await tg.rejected.waitFor((m) => m.routingKey === 'intake.rejected.telegram' && m.body.reason === 'unsupported_type');
    expect((await postWebhook(tg.baseUrl, SECRET, { update_id: 1, callback_query: { id: 'cb' } })).status).to.equal(200);
    expect((await postWebhook(tg.baseUrl, SECRET, { nonsense: true })).status).to.equal(200);
    await tg.rejected.waitFor((m) => m.routingKey === 'intake.rejected.telegram' && m.body.reason === 'parse_error');
    for (const u of [start, sticker]) {
      expect(await tg.created.settle((x) => x.body.id === ticketIdFor('telegram', String(u.update_id)), 100)).to.have.length(0);
    }
  });

  it('downstream replies go out with sendMessage; 403 (bot blocked) is permanent', async () => {
    const u = makeUpdate({ text: '供暖不热' }, { userId: 4_000_000_000_555 });
    await postWebhook(tg.baseUrl, SECRET, u);
    const t = await createdFor(u.update_id as number);
    await waitUntil(() => fake.sent.some((s) => s.chatId === '4000000000555'), 15_000, 'receipt');
    await publishJson(tg.amqpUrl, 'tickets.replies', { ticketId: t.id, replyId: `tg-${u.update_id}`, text: '热力公司已安排上门检修。' });
    await waitUntil(() => fake.sent.some((s) => s.chatId === '4000000000555' && s.text === '热力公司已安排上门检修。'), 15_000, 'reply');
    await tg.events.waitFor((e) => e.routingKey === 'ticket.responded.telegram' && e.body.ticketId === t.id);
    fake.sendErrors = [{ errorCode: 403, description: 'Forbidden: bot was blocked by the user' }];
    await tg.post(`/api/v1/tickets/${t.id}/replies`, { replyId: `tgx-${u.update_id}`, text: '再次答复' });
    const [failed] = await tg.repliesFailed.waitFor((m) => m.body.replyId === `tgx-${u.update_id}`);
    expect(JSON.stringify(failed!.body)).to.contain('bot was blocked');
  });
  it('store unusable → 503 so Telegram redelivers; the redelivery makes the ticket', async () => {
    const u = makeUpdate({ text: '存储故障' });
    sqliteDb(tg.gateway).pragma('query_only = ON');
    try {
      expect((await postWebhook(tg.baseUrl, SECRET, u)).status).to.equal(503);
    } finally {
      sqliteDb(tg.gateway).pragma('query_only = OFF');
    }
    expect((await postWebhook(tg.baseUrl, SECRET, u)).status).to.equal(200);
    await createdFor(u.update_id as number);
  });
});

describe('telegram channel, polling mode (end to end)', function () {
  this.timeout(60_000);
  let fake: FakeTelegram;
  let tg: TestGateway;

  before(async () => {
    fake = await startFakeTelegram({ token: BOT_TOKEN, maxPollSeconds: 1 });
    fake.webhook = { url: 'https://old.example/hook', secretToken: null };
    tg = await startTestGateway({ TELEGRAM_BOT_TOKEN: BOT_TOKEN, TELEGRAM_API_URL: fake.url, TELEGRAM_POLL_TIMEOUT: '1s' });
  });
  after(async () => {
    await tg?.stop();
    await fake?.close();
  });

  it('clears an old webhook, polls, makes the ticket, and confirms the update only after that', async () => {
    const u = makeUpdate({ text: '楼道灯坏了（轮询）' }, { userId: 4_000_000_000_900 });
    fake.pushUpdate(u);
    const t = await (async () => {
      const [m] = await tg.created.waitFor((x) => x.body.id === ticketIdFor('telegram', String(u.update_id)));
      return m!.body;
    })();
    expect(fake.webhook).to.equal(null);
    expect(t.content).to.equal('楼道灯坏了（轮询）');
    await waitUntil(() => fake.offsets.some((o) => o === (u.update_id as number) + 1), 10_000, 'offset confirmation');
    expect(fake.pending()).to.have.length(0);
    await waitUntil(() => fake.sent.some((s) => s.chatId === '4000000000900' && s.text.includes(t.number)), 15_000, 'receipt');
  });

  it('does not confirm an update while the store is unusable, and makes the ticket once it recovers', async () => {
    const u = makeUpdate({ text: '轮询时存储故障' });
    const id = u.update_id as number;
    sqliteDb(tg.gateway).pragma('query_only = ON');
    try {
      fake.pushUpdate(u);
      // Let the poller fetch it and fail at least once.
      const seen = fake.calls.length;
      await waitUntil(() => fake.calls.filter((c) => c.method === 'getUpdates').length > 0 && fake.calls.length > seen + 1, 10_000, 'polls');
      await new Promise((r) => setTimeout(r, 1500));
      expect(fake.offsets.some((o) => o !== null && o > id)).to.equal(false);
      expect(fake.pending().map((x) => x.update_id)).to.include(id);
    } finally {
      sqliteDb(tg.gateway).pragma('query_only = OFF');
    }
    await tg.created.waitFor((x) => x.body.id === ticketIdFor('telegram', String(id)), 1, 20_000);
    await waitUntil(() => fake.offsets.some((o) => o !== null && o > id), 15_000, 'confirmation after recovery');
  });

  it('resumes from the stored offset after a restart, without a second ticket', async () => {
    const a = makeUpdate({ text: '重启前' });
    fake.pushUpdate(a);
    await tg.created.waitFor((x) => x.body.id === ticketIdFor('telegram', String(a.update_id)));
    await tg.restart();
    const b = makeUpdate({ text: '重启后' });
    fake.pushUpdate(b);
    await tg.created.waitFor((x) => x.body.id === ticketIdFor('telegram', String(b.update_id)));
    const firstAfterRestart = fake.offsets.filter((o) => o !== null && o > (a.update_id as number));
    expect(firstAfterRestart.length).to.be.greaterThan(0);
    expect(await tg.created.settle((x) => x.body.id === ticketIdFor('telegram', String(a.update_id)), 300)).to.have.length(1);
  });
});
