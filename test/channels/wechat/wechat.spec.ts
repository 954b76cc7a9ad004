import { expect } from 'chai';
import { ticketIdFor } from '../../../src/ticket.js';
import { WechatCrypto, wechatSignature } from '../../../src/channels/wechat/crypto.js';
import { startTestGateway, waitUntil, type TestGateway, sqliteDb } from '../../support/gateway.js';
import { freePort } from '../../support/gateway.js';
import { publishJson } from '../../support/rabbit.js';
import {
  nextMsgId,
  pushToWechat,
  startFakeWechat,
  textMessage,
  verifyUrl,
  wechatXml,
  type FakeWechat,
  type WechatAccount,
} from '../../support/fake-wechat.js';

const TOKEN = 'wx_test_token_12345';
const APP_ID = 'wx5823bf96d3bd56c7';
const APP_SECRET = 'app-secret-for-tests';
const AES_KEY = 'jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C';
const GH = 'gh_12345test';

const plain: WechatAccount = { token: TOKEN, appId: APP_ID, ghId: GH };
const safe: WechatAccount = { token: TOKEN, appId: APP_ID, aesKey: AES_KEY, ghId: GH };

function wechatConfig(fake: FakeWechat, extra: Record<string, unknown> = {}) {
  return {
    WECHAT_TOKEN: TOKEN,
    WECHAT_APP_ID: APP_ID,
    WECHAT_APP_SECRET: APP_SECRET,
    WECHAT_ENCODING_AES_KEY: AES_KEY,
    WECHAT_API_URL: fake.url,
    WECHAT_MEDIA_TIMEOUT: '1500ms',
    SEND_MAX_ATTEMPTS: 3,
    ...extra,
  };
}

const msg = (type: string, fields: Record<string, string | number | bigint>, from = 'oCitizen_openid_1') => {
  const msgId = nextMsgId();
  return {
    msgId,
    xml: wechatXml({ ToUserName: GH, FromUserName: from, CreateTime: Math.floor(Date.now() / 1000), MsgType: type, ...fields, MsgId: BigInt(msgId) }),
  };
};

describe('wechat channel (end to end)', function () {
  this.timeout(60_000);
  let fake: FakeWechat;
  let tg: TestGateway;

  before(async () => {
    fake = await startFakeWechat({ appId: APP_ID, appSecret: APP_SECRET });
    tg = await startTestGateway(wechatConfig(fake));
  });
  after(async () => {
    await tg?.stop();
    await fake?.close();
  });

  const createdFor = async (msgId: string) => {
    const id = ticketIdFor('wechat', msgId);
    const [m] = await tg.created.waitFor((x) => x.body.id === id);
    return m!.body;
  };

  describe('URL verification', () => {
    it('echoes echostr when the signature matches', async () => {
      const r = await verifyUrl(tg.baseUrl, plain, '5837397749954527391');
      expect(r).to.deep.equal({ status: 200, body: '5837397749954527391' });
    });
    it('safe-mode style verification (msg_signature, encrypted echostr) answers the decrypted echostr', async () => {
      const crypto = new WechatCrypto(AES_KEY, APP_ID);
      const echostr = crypto.encrypt('1616140317555161061');
      const timestamp = String(Math.floor(Date.now() / 1000));
      const nonce = '424242';
      const q = new URLSearchParams({ msg_signature: wechatSignature(TOKEN, timestamp, nonce, echostr), timestamp, nonce, echostr, encrypt_type: 'aes' });
      const r = await fetch(`${tg.baseUrl}/wechat?${q}`);
      expect(r.status).to.equal(200);
      expect(await r.text()).to.equal('1616140317555161061');
    });
    it('answers 401 to a wrong signature', async () => {
      const r = await verifyUrl(tg.baseUrl, plain, 'x', { badSignature: true });
      expect(r.status).to.equal(401);
      expect(r.body).not.to.contain('x');
    });
  });

  describe('safe mode (安全模式)', () => {
    it('decrypts the push; the encrypted passive reply is signed and names the ticket number', async () => {
      const { msgId, xml } = msg('text', { Content: '安全模式：井盖丢失' }, 'oCitizen_safe');
      const r = await pushToWechat(tg.baseUrl, safe, xml, { signal: AbortSignal.timeout(5000) });
      expect(r.status).to.equal(200);
      expect(r.body).to.contain('<Encrypt>').and.contain('<MsgSignature>');
      expect(r.body).not.to.contain('井盖');
      expect(r.replySignatureOk).to.equal(true);
      const ticket = await createdFor(msgId);
      expect(ticket.content).to.equal('安全模式：井盖丢失');
      expect(ticket.source.encrypted).to.equal(true);
      expect(r.reply).to.include({ ToUserName: 'oCitizen_safe', FromUserName: GH, MsgType: 'text' });
      expect(r.reply!.Content).to.contain(ticket.number);
    });

    it('wrong msg_signature or another AppID inside → 401 and no ticket', async () => {
      const { msgId, xml } = msg('text', { Content: '伪造' });
      expect((await pushToWechat(tg.baseUrl, safe, xml, { badSignature: true })).status).to.equal(401);
      expect((await pushToWechat(tg.baseUrl, safe, xml, { cryptAppId: 'wx_not_ours' })).status).to.equal(401);
      expect(await tg.created.settle((x) => x.body.id === ticketIdFor('wechat', msgId), 500)).to.have.length(0);
    });

    it('a plaintext push, even one signed with the right token, → 401 and no ticket', async () => {
      const { msgId, xml } = msg('text', { Content: '明文推送' });
      expect((await pushToWechat(tg.baseUrl, plain, xml)).status).to.equal(401);
      expect(await tg.created.settle((x) => x.body.id === ticketIdFor('wechat', msgId), 500)).to.have.length(0);
    });

    it('a replayed encrypted retry → one ticket', async () => {
      const { msgId, xml } = msg('text', { Content: '重复推送测试' });
      await pushToWechat(tg.baseUrl, safe, xml);
      await pushToWechat(tg.baseUrl, safe, xml);
      await createdFor(msgId);
      expect(await tg.created.settle((x) => x.body.id === ticketIdFor('wechat', msgId), 500)).to.have.length(1);
    });
  });

  describe('message types', () => {
    it('image: downloads the media through the API and attaches it', async () => {
      const jpeg = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(2000, 7)]);
      fake.media.set('MEDIA_IMG_1', { data: jpeg, contentType: 'image/jpeg' });
      const { msgId, xml } = msg('image', { PicUrl: 'http://mmbiz.qpic.cn/x.jpg', MediaId: 'MEDIA_IMG_1' });
      const r = await pushToWechat(tg.baseUrl, safe, xml);
      const ticket = await createdFor(msgId);
      expect(r.reply!.Content).to.contain(ticket.number);
      expect(ticket.attachments).to.have.length(1);
      expect(ticket.attachments[0]).to.include({ mimeType: 'image/jpeg', size: jpeg.length, fileName: 'MEDIA_IMG_1.jpg' });
      expect(ticket.source).to.include({ mediaId: 'MEDIA_IMG_1', picUrl: 'http://mmbiz.qpic.cn/x.jpg' });
      expect(ticket.source).not.to.have.property('mediaError');
      const call = fake.calls.find((c) => c.path === '/cgi-bin/media/get' && c.query.media_id === 'MEDIA_IMG_1');
      expect(call?.query.access_token).to.match(/^ACCESS_TOKEN_/);
    });

    it('voice: Recognition is the content, the audio is attached', async () => {
      fake.media.set('MEDIA_VOICE_1', { data: Buffer.from('#!AMR\n....'), contentType: 'audio/amr' });
      const { msgId, xml } = msg('voice', { MediaId: 'MEDIA_VOICE_1', Format: 'amr', Recognition: '我要投诉小区物业不作为' });
      await pushToWechat(tg.baseUrl, safe, xml);
      const ticket = await createdFor(msgId);
      expect(ticket.content).to.equal('我要投诉小区物业不作为');
      expect(ticket.attachments[0]).to.include({ mimeType: 'audio/amr' });
      expect(ticket.source).to.include({ format: 'amr', recognition: '我要投诉小区物业不作为' });
    });

    it('location: Location_X latitude, Location_Y longitude, Label address', async () => {
      const { msgId, xml } = msg('location', { Location_X: '23.134521', Location_Y: '113.358803', Scale: 20, Label: '广州市天河区天河路' });
      await pushToWechat(tg.baseUrl, safe, xml);
      const ticket = await createdFor(msgId);
      expect(ticket.location).to.deep.equal({ lat: 23.134521, lon: 113.358803, address: '广州市天河区天河路' });
    });

    it('link, video and shortvideo', async () => {
      const link = msg('link', { Title: '违建举报', Description: '楼顶加盖', Url: 'http://example.org/a' });
      const video = msg('video', { MediaId: 'V1', ThumbMediaId: 'T1' });
      const short = msg('shortvideo', { MediaId: 'V2', ThumbMediaId: 'T2' });
      for (const m of [link, video, short]) expect((await pushToWechat(tg.baseUrl, safe, m.xml)).status).to.equal(200);
      expect((await createdFor(link.msgId)).content).to.equal('违建举报\n楼顶加盖\nhttp://example.org/a');
      expect((await createdFor(video.msgId)).source).to.include({ msgType: 'video', mediaId: 'V1' });
      expect((await createdFor(short.msgId)).source).to.include({ msgType: 'shortvideo', mediaId: 'V2' });
    });

    it('events are not tickets; subscribe gets the welcome reply', async () => {
      const createTime = Math.floor(Date.now() / 1000);
      const sub = wechatXml({ ToUserName: GH, FromUserName: 'oNewFan', CreateTime: createTime, MsgType: 'event', Event: 'subscribe', EventKey: '' });
      const r = await pushToWechat(tg.baseUrl, safe, sub);
      expect(r.reply!.Content).to.contain('12345');
      expect(r.reply!.ToUserName).to.equal('oNewFan');
      for (const ev of ['unsubscribe', 'CLICK', 'VIEW', 'SCAN', 'LOCATION']) {
        const x = wechatXml({ ToUserName: GH, FromUserName: 'oNewFan', CreateTime: createTime, MsgType: 'event', Event: ev, EventKey: 'k' });
        const rr = await pushToWechat(tg.baseUrl, safe, x);
        expect(rr.body).to.equal('success');
      }
      expect(await tg.created.settle((x) => x.body.citizen.channelUserId === 'oNewFan', 500)).to.have.length(0);
    });

    it('unknown MsgType → intake.rejected (unsupported_type) and `success`', async () => {
      const { xml } = msg('miniprogrampage', { Title: 'x' }, 'oOddUser');
      const r = await pushToWechat(tg.baseUrl, safe, xml);
      expect(r.body).to.equal('success');
      const [rej] = await tg.rejected.waitFor((x) => x.routingKey === 'intake.rejected.wechat' && x.body.reason === 'unsupported_type');
      expect(rej).to.exist;
    });
  });

  describe('media failures never lose the ticket', () => {
    it('an API error is noted in source.mediaError', async () => {
      fake.media.set('MEDIA_BAD', { data: Buffer.alloc(0), contentType: 'image/jpeg', errcode: 40007 });
      const { msgId, xml } = msg('image', { PicUrl: 'http://mmbiz.qpic.cn/bad.jpg', MediaId: 'MEDIA_BAD' });
      const r = await pushToWechat(tg.baseUrl, safe, xml);
      const ticket = await createdFor(msgId);
      expect(r.reply!.Content).to.contain(ticket.number);
      expect(ticket.attachments).to.have.length(0);
      expect(ticket.source.mediaError).to.match(/40007/);
      expect(ticket.content).to.contain('http://mmbiz.qpic.cn/bad.jpg');
    });

    it('an HTTP 500 from the media server is noted too', async () => {
      fake.media.set('MEDIA_500', { data: Buffer.alloc(0), contentType: 'image/jpeg', httpStatus: 500 });
      const { msgId, xml } = msg('image', { PicUrl: 'http://p/x.jpg', MediaId: 'MEDIA_500' });
      await pushToWechat(tg.baseUrl, safe, xml);
      expect((await createdFor(msgId)).source.mediaError).to.match(/500/);
    });

    it('a download slower than WECHAT_MEDIA_TIMEOUT is abandoned and the answer still comes within 5 s', async () => {
      fake.media.set('MEDIA_SLOW', { data: Buffer.alloc(10), contentType: 'image/jpeg', delayMs: 8000 });
      const { msgId, xml } = msg('image', { PicUrl: 'http://p/slow.jpg', MediaId: 'MEDIA_SLOW' });
      const r = await pushToWechat(tg.baseUrl, safe, xml, { signal: AbortSignal.timeout(5000) });
      const ticket = await createdFor(msgId);
      expect(r.reply!.Content).to.contain(ticket.number);
      expect(ticket.source.mediaError).to.match(/longer than/);
    });

    it('an expired access_token is refreshed and the download retried', async () => {
      fake.media.set('MEDIA_TOKEN', { data: Buffer.from([0xff, 0xd8, 1, 2, 3]), contentType: 'image/jpeg' });
      const before = fake.tokensIssued;
      fake.expireToken();
      const { msgId, xml } = msg('image', { PicUrl: 'http://p/t.jpg', MediaId: 'MEDIA_TOKEN' });
      await pushToWechat(tg.baseUrl, safe, xml);
      const ticket = await createdFor(msgId);
      expect(ticket.attachments).to.have.length(1);
      expect(fake.tokensIssued).to.equal(before + 1);
    });
  });

  describe('replies through the customer-service API', () => {
    it('POST /api/v1/tickets/:id/replies reaches custom/send as {touser, msgtype:text, text:{content}}', async () => {
      const { msgId, xml } = msg('text', { Content: '请问社保卡怎么补办' }, 'oReplyUser');
      await pushToWechat(tg.baseUrl, safe, xml);
      const ticket = await createdFor(msgId);
      const res = await tg.post(`/api/v1/tickets/${ticket.id}/replies`, { replyId: `r-${msgId}`, text: '您好，请携带身份证到社保中心办理。' });
      expect(res.status).to.equal(202);
      await waitUntil(() => fake.sent.some((s) => s.touser === 'oReplyUser'), 15_000, 'customer-service message');
      const sent = fake.sent.find((s) => s.touser === 'oReplyUser')!;
      expect(sent.body).to.deep.equal({ touser: 'oReplyUser', msgtype: 'text', text: { content: '您好，请携带身份证到社保中心办理。' } });
      const [responded] = await tg.events.waitFor((e) => e.routingKey === 'ticket.responded.wechat' && e.body.ticketId === ticket.id);
      expect(responded!.body.replyId).to.equal(`r-${msgId}`);
    });

    it('a reply published to tickets.replies goes out too; system busy (-1) and an expired token are retried', async () => {
      const { msgId, xml } = msg('text', { Content: '公交站台损坏' }, 'oQueueUser');
      await pushToWechat(tg.baseUrl, safe, xml);
      const ticket = await createdFor(msgId);
      fake.failSendTo('oQueueUser', [-1, 42001]);
      await publishJson(tg.amqpUrl, 'tickets.replies', { ticketId: ticket.id, replyId: `q-${msgId}`, text: '已转交交通部门处理。' });
      await waitUntil(() => fake.sent.some((s) => s.touser === 'oQueueUser'), 40_000, 'customer-service message after retries');
      await tg.events.waitFor((e) => e.routingKey === 'ticket.responded.wechat' && e.body.ticketId === ticket.id);
    });

    it('45015 (outside the 48-hour window) is permanent: reply.failed with the errcode', async () => {
      const { msgId, xml } = msg('text', { Content: '路面塌陷' }, 'oLateUser');
      await pushToWechat(tg.baseUrl, safe, xml);
      const ticket = await createdFor(msgId);
      fake.failSendTo('oLateUser', [45015]);
      await tg.post(`/api/v1/tickets/${ticket.id}/replies`, { replyId: `late-${msgId}`, text: '答复' });
      const [failed] = await tg.repliesFailed.waitFor((m) => m.body.ticketId === ticket.id);
      expect(JSON.stringify(failed!.body)).to.contain('45015');
      expect(fake.sent.some((s) => s.touser === 'oLateUser')).to.equal(false);
    });
  });
  describe('store failure', () => {
    it('store unusable → 503 (WeChat retries); the retry after recovery makes the one ticket', async () => {
      const { msgId, xml } = msg('text', { Content: '存储故障期间的消息' });
      sqliteDb(tg.gateway).pragma('query_only = ON');
      try {
        const r = await pushToWechat(tg.baseUrl, safe, xml);
        expect(r.status).to.equal(503);
        expect(r.reply).to.equal(null);
      } finally {
        sqliteDb(tg.gateway).pragma('query_only = OFF');
      }
      const again = await pushToWechat(tg.baseUrl, safe, xml);
      const ticket = await createdFor(msgId);
      expect(again.reply!.Content).to.contain(ticket.number);
    });
  });
});

describe('wechat channel with the broker unreachable', function () {
  this.timeout(60_000);
  let fake: FakeWechat;
  let tg: TestGateway;

  before(async () => {
    fake = await startFakeWechat({ appId: APP_ID, appSecret: APP_SECRET });
    const closedPort = await freePort();
    tg = await startTestGateway(wechatConfig(fake, { AMQP_URL: `amqp://guest:guest@127.0.0.1:${closedPort}` }), { noCollectors: true });
  });
  after(async () => {
    await tg?.stop();
    await fake?.close();
  });

  it('still answers within WeChat 5 s with the ticket number, and the ticket is kept', async () => {
    const msgId = nextMsgId();
    const r = await pushToWechat(tg.baseUrl, safe, textMessage('oOffline', '停水了，什么时候恢复', msgId, GH), { signal: AbortSignal.timeout(5000) });
    expect(r.status).to.equal(200);
    const id = ticketIdFor('wechat', msgId);
    const res = await tg.get(`/api/v1/tickets/${id}`);
    expect(res.status).to.equal(200);
    const ticket = (await res.json()) as { number: string; content: string };
    expect(r.reply!.Content).to.contain(ticket.number);
    expect(ticket.content).to.equal('停水了，什么时候恢复');
  });
});

describe('wechat channel in plaintext mode (end to end)', function () {
  this.timeout(60_000);
  let fake: FakeWechat;
  let tg: TestGateway;

  before(async () => {
    fake = await startFakeWechat({ appId: APP_ID, appSecret: APP_SECRET });
    // No EncodingAESKey: with one, plaintext pushes are refused.
    tg = await startTestGateway(wechatConfig(fake, { WECHAT_ENCODING_AES_KEY: '' }));
  });
  after(async () => {
    await tg?.stop();
    await fake?.close();
  });

  const createdFor = async (msgId: string) => {
    const id = ticketIdFor('wechat', msgId);
    const [m] = await tg.created.waitFor((x) => x.body.id === id);
    return m!.body;
  };

  it('text → ticket, passive receipt naming the number, ticket.acknowledged via passive-reply', async () => {
    const { msgId, xml } = msg('text', { Content: '幸福小区3号楼门口路灯不亮已经一周了' });
    const r = await pushToWechat(tg.baseUrl, plain, xml, { signal: AbortSignal.timeout(5000) });
    expect(r.status).to.equal(200);
    expect(r.reply).to.include({ ToUserName: 'oCitizen_openid_1', FromUserName: GH, MsgType: 'text' });
    const ticket = await createdFor(msgId);
    expect(ticket.channel).to.equal('wechat');
    expect(ticket.channelMessageIds).to.deep.equal([msgId]);
    expect(ticket.content).to.equal('幸福小区3号楼门口路灯不亮已经一周了');
    expect(ticket.citizen.channelUserId).to.equal('oCitizen_openid_1');
    expect(r.reply!.Content).to.contain(ticket.number);
    const [ack] = await tg.events.waitFor((e) => e.routingKey === 'ticket.acknowledged.wechat' && e.body.ticketId === ticket.id);
    expect(ack!.body.via).to.equal('passive-reply');
  });

  it('a WeChat retry of the same MsgId gives one ticket and the same receipt', async () => {
    const { msgId, xml } = msg('text', { Content: '噪音扰民，晚上施工' });
    const [a, b, c] = await Promise.all([pushToWechat(tg.baseUrl, plain, xml), pushToWechat(tg.baseUrl, plain, xml), pushToWechat(tg.baseUrl, plain, xml)]);
    const ticket = await createdFor(msgId);
    for (const r of [a, b, c]) expect(r!.reply!.Content).to.contain(ticket.number);
    const again = await pushToWechat(tg.baseUrl, plain, xml);
    expect(again.reply!.Content).to.contain(ticket.number);
    const all = await tg.created.settle((x) => x.body.id === ticket.id, 500);
    expect(all).to.have.length(1);
  });

  it('wrong signature → 401 and no ticket', async () => {
    const { msgId, xml } = msg('text', { Content: '伪造的消息' });
    const r = await pushToWechat(tg.baseUrl, plain, xml, { badSignature: true });
    expect(r.status).to.equal(401);
    const r2 = await pushToWechat(tg.baseUrl, { ...plain, token: 'other-token' }, xml);
    expect(r2.status).to.equal(401);
    const found = await tg.created.settle((x) => x.body.id === ticketIdFor('wechat', msgId), 500);
    expect(found).to.have.length(0);
  });
});
