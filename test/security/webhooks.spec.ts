import { expect } from 'chai';
import { ticketIdFor } from '../../src/ticket.js';
import { createLogger } from '../../src/log.js';
import { loadConfig } from '../../src/config.js';
import { WechatCrypto, wechatSignature } from '../../src/channels/wechat/crypto.js';
import { weiboSignature } from '../../src/channels/weibo/parse.js';
import { startTestGateway, type TestGateway, sqliteDb } from '../support/gateway.js';
import { nextMsgId, pushToWechat, randomNonce, wechatXml, type WechatAccount } from '../support/fake-wechat.js';
import { weiboPushBody } from '../support/fake-weibo.js';
import { makeUpdate, postWebhook, startFakeTelegram, type FakeTelegram } from '../support/fake-telegram.js';

/**
 * Attacks on the platform webhooks, over real HTTP against a running gateway:
 * forged and stale pushes (WeChat plaintext and safe mode, Weibo), the replay of
 * a captured (timestamp, nonce, signature) with another body, plaintext pushes
 * while safe mode is on, a large unsigned body, Telegram's wrong secret. Every
 * refusal is a 401, makes no ticket and no rejection, and is logged without the body.
 */

const TOKEN = 'wx_security_token';
const APP_ID = 'wx5823bf96d3bd56c7';
const AES_KEY = 'jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C';
const GH = 'gh_security';
const WEIBO_SECRET = 'weibo-security-secret';
const BOT_TOKEN = '123456789:AAsecurity-token_for-the-fake-bot';
const TG_SECRET = 'telegram-security-secret_0123';

const plain: WechatAccount = { token: TOKEN, appId: APP_ID, ghId: GH };
const safe: WechatAccount = { token: TOKEN, appId: APP_ID, aesKey: AES_KEY, ghId: GH };

const seconds = (ms: number) => String(Math.floor(ms / 1000));

/** Log lines as written, so a test can check what a refusal logged. */
class LogCapture {
  readonly lines: string[] = [];
  readonly logger = createLogger('debug', { write: (s: string) => void this.lines.push(s) });
  mark(): number {
    return this.lines.length;
  }
  since(mark: number): string[] {
    return this.lines.slice(mark);
  }
}

function textXml(from: string, content: string, msgId = nextMsgId()): { msgId: string; xml: string } {
  return { msgId, xml: wechatXml({ ToUserName: GH, FromUserName: from, CreateTime: Math.floor(Date.now() / 1000), MsgType: 'text', Content: content, MsgId: BigInt(msgId) }) };
}

async function postWeibo(baseUrl: string, q: { signature: string; timestamp: string; nonce: string }, body: string): Promise<number> {
  const r = await fetch(`${baseUrl}/weibo?${new URLSearchParams(q)}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
  await r.text();
  return r.status;
}

function weiboQuery(timestampMs: number, nonce = String(Math.floor(Math.random() * 1e8))) {
  const timestamp = String(timestampMs);
  return { signature: weiboSignature(WEIBO_SECRET, timestamp, nonce), timestamp, nonce };
}

let uid = 9_007_199_254_900_001n;
const nextUid = () => (uid += 2n).toString();

describe('security: platform webhooks', function () {
  this.timeout(60_000);
  let fakeTelegram: FakeTelegram;
  /** WeChat in plaintext mode, Weibo and the Telegram webhook. */
  let gw: TestGateway;
  /** WeChat in safe mode, on a clock the test can move. */
  let gwSafe: TestGateway;
  let clockOffset = 0;
  const logs = new LogCapture();
  const safeLogs = new LogCapture();

  before(async () => {
    fakeTelegram = await startFakeTelegram({ token: BOT_TOKEN });
    gw = await startTestGateway(
      {
        WECHAT_TOKEN: TOKEN,
        WEIBO_APP_SECRET: WEIBO_SECRET,
        TELEGRAM_BOT_TOKEN: BOT_TOKEN,
        TELEGRAM_WEBHOOK_SECRET: TG_SECRET,
        TELEGRAM_API_URL: fakeTelegram.url,
        SEND_MAX_ATTEMPTS: 1,
      },
      { logger: logs.logger },
    );
    gwSafe = await startTestGateway(
      { WECHAT_TOKEN: TOKEN, WECHAT_APP_ID: APP_ID, WECHAT_ENCODING_AES_KEY: AES_KEY },
      { logger: safeLogs.logger, clock: { now: () => Date.now() + clockOffset } },
    );
  });
  after(async () => {
    await gw?.stop();
    await gwSafe?.stop();
    await fakeTelegram?.close();
  });

  /** No ticket for `msgId` and nothing new on intake.rejected, after a short settle. */
  async function expectNothingKept(tg: TestGateway, ticketId: string, rejectedBefore: number): Promise<void> {
    expect(await tg.created.settle((x) => x.body.id === ticketId, 500)).to.have.length(0);
    expect(tg.rejected.messages.length, 'nothing recorded on intake.rejected').to.equal(rejectedBefore);
  }

  /** A 401 was logged as a warning, and no line since `mark` holds `marker` (from the body). */
  function expectLoggedWithoutBody(capture: LogCapture, mark: number, channel: string, marker: string): void {
    const lines = capture.since(mark);
    const refusals = lines.filter((l) => l.includes(`"channel":"${channel}"`) && l.includes('"level":40'));
    expect(refusals, `a warning for the refused ${channel} call`).to.have.length.greaterThan(0);
    for (const l of lines) expect(l).not.to.contain(marker);
  }

  it('WEBHOOK_MAX_SKEW is a duration, 300 s unless configured', () => {
    expect(loadConfig({}, {}).WEBHOOK_MAX_SKEW).to.equal(300_000);
    expect(loadConfig({}, { WEBHOOK_MAX_SKEW: '2m' }).WEBHOOK_MAX_SKEW).to.equal(120_000);
    expect(() => loadConfig({}, { WEBHOOK_MAX_SKEW: 'soon' })).to.throw(/WEBHOOK_MAX_SKEW/);
  });

  describe('WeChat plaintext mode', () => {
    it('a forged signature → 401, no ticket, logged without the body', async () => {
      const { msgId, xml } = textXml('oForger', '伪造签名-marker-wx-forged');
      const rej = gw.rejected.messages.length;
      const mark = logs.mark();
      expect((await pushToWechat(gw.baseUrl, plain, xml, { badSignature: true })).status).to.equal(401);
      expect((await pushToWechat(gw.baseUrl, { ...plain, token: 'guessed-token' }, xml)).status).to.equal(401);
      await expectNothingKept(gw, ticketIdFor('wechat', msgId), rej);
      expectLoggedWithoutBody(logs, mark, 'wechat', 'marker-wx-forged');
    });

    it('a correctly signed push whose timestamp is outside WEBHOOK_MAX_SKEW (300 s) → 401, no ticket', async () => {
      const rej = gw.rejected.messages.length;
      const mark = logs.mark();
      const old = textXml('oStale', '过期推送-marker-wx-stale');
      expect((await pushToWechat(gw.baseUrl, plain, old.xml, { timestamp: seconds(Date.now() - 10 * 60_000) })).status).to.equal(401);
      const future = textXml('oStale', '未来推送-marker-wx-stale');
      expect((await pushToWechat(gw.baseUrl, plain, future.xml, { timestamp: seconds(Date.now() + 10 * 60_000) })).status).to.equal(401);
      await expectNothingKept(gw, ticketIdFor('wechat', old.msgId), rej);
      await expectNothingKept(gw, ticketIdFor('wechat', future.msgId), rej);
      expectLoggedWithoutBody(logs, mark, 'wechat', 'marker-wx-stale');
      // Inside the window is fine: WeChat's own clock and delivery are not exact.
      const ok = textXml('oStale', '两分钟前的推送');
      expect((await pushToWechat(gw.baseUrl, plain, ok.xml, { timestamp: seconds(Date.now() - 120_000) })).status).to.equal(200);
      await gw.created.waitFor((x) => x.body.id === ticketIdFor('wechat', ok.msgId));
    });

    it('a captured (timestamp, nonce, signature) cannot carry a push from another user', async () => {
      const timestamp = seconds(Date.now());
      // A nonce that is itself a current timestamp, so that the swapped pair below is fresh too.
      const nonce = String(Number(timestamp) + 7);
      const genuine = textXml('oGenuineCitizen', '小区门口积水');
      expect((await pushToWechat(gw.baseUrl, plain, genuine.xml, { timestamp, nonce })).status).to.equal(200);
      await gw.created.waitFor((x) => x.body.id === ticketIdFor('wechat', genuine.msgId));

      const rej = gw.rejected.messages.length;
      const mark = logs.mark();
      const forged = textXml('oSomeoneElse', '冒名投诉-marker-wx-replay');
      const r = await pushToWechat(gw.baseUrl, plain, forged.xml, { timestamp, nonce });
      expect(r.status).to.equal(401);
      await expectNothingKept(gw, ticketIdFor('wechat', forged.msgId), rej);
      expectLoggedWithoutBody(logs, mark, 'wechat', 'marker-wx-replay');
      // Swapped, the pair gives the same signature (the values are sorted before
      // hashing) and a timestamp inside the window: still the captured signature.
      const resplit = await fetch(
        `${gw.baseUrl}/wechat?${new URLSearchParams({ signature: wechatSignature(TOKEN, timestamp, nonce), timestamp: nonce, nonce: timestamp })}`,
        { method: 'POST', headers: { 'Content-Type': 'text/xml' }, body: forged.xml },
      );
      expect(resplit.status).to.equal(401);
    });

    it('a push the gateway did not acknowledge (503) is taken when WeChat delivers it again with the same query string', async () => {
      const timestamp = seconds(Date.now());
      const nonce = randomNonce();
      const { msgId, xml } = textXml('oRetry', '存储故障时的推送');
      sqliteDb(gw.gateway).pragma('query_only = ON');
      try {
        expect((await pushToWechat(gw.baseUrl, plain, xml, { timestamp, nonce })).status).to.equal(503);
      } finally {
        sqliteDb(gw.gateway).pragma('query_only = OFF');
      }
      expect((await pushToWechat(gw.baseUrl, plain, xml, { timestamp, nonce })).status).to.equal(200);
      await gw.created.waitFor((x) => x.body.id === ticketIdFor('wechat', msgId));
    });
  });

  describe('WeChat safe mode (WECHAT_ENCODING_AES_KEY set)', () => {
    it('a plaintext push, even correctly signed with the token, → 401 and no ticket', async () => {
      const { msgId, xml } = textXml('oPlainOnSafe', '明文推送-marker-wx-plain-on-safe');
      const rej = gwSafe.rejected.messages.length;
      const mark = safeLogs.mark();
      expect((await pushToWechat(gwSafe.baseUrl, plain, xml)).status).to.equal(401);
      await expectNothingKept(gwSafe, ticketIdFor('wechat', msgId), rej);
      expectLoggedWithoutBody(safeLogs, mark, 'wechat', 'marker-wx-plain-on-safe');
    });

    it('a forged msg_signature, or a captured query string with another <Encrypt>, → 401 and no ticket', async () => {
      const rej = gwSafe.rejected.messages.length;
      const forged = textXml('oForger', '伪造');
      expect((await pushToWechat(gwSafe.baseUrl, safe, forged.xml, { badSignature: true })).status).to.equal(401);

      const timestamp = seconds(Date.now());
      const nonce = randomNonce();
      const genuine = textXml('oGenuineSafe', '安全模式真实推送');
      expect((await pushToWechat(gwSafe.baseUrl, safe, genuine.xml, { timestamp, nonce })).status).to.equal(200);
      await gwSafe.created.waitFor((x) => x.body.id === ticketIdFor('wechat', genuine.msgId));
      // The attacker encrypts their own message (the AES key is not what protects
      // the push) and reuses the captured query string.
      const other = textXml('oSomeoneElse', '冒名');
      const encrypt = new WechatCrypto(AES_KEY, APP_ID).encrypt(other.xml);
      const q = new URLSearchParams({
        signature: wechatSignature(TOKEN, timestamp, nonce),
        timestamp,
        nonce,
        encrypt_type: 'aes',
        msg_signature: wechatSignature(TOKEN, timestamp, nonce, new WechatCrypto(AES_KEY, APP_ID).encrypt(genuine.xml)),
      });
      const r = await fetch(`${gwSafe.baseUrl}/wechat?${q}`, { method: 'POST', headers: { 'Content-Type': 'text/xml' }, body: `<xml><ToUserName><![CDATA[${GH}]]></ToUserName><Encrypt><![CDATA[${encrypt}]]></Encrypt></xml>` });
      expect(r.status).to.equal(401);
      await expectNothingKept(gwSafe, ticketIdFor('wechat', forged.msgId), rej);
      await expectNothingKept(gwSafe, ticketIdFor('wechat', other.msgId), rej);
    });

    it('a correctly signed and encrypted push with a stale timestamp → 401, no ticket', async () => {
      const rej = gwSafe.rejected.messages.length;
      const { msgId, xml } = textXml('oStaleSafe', '过期的安全模式推送');
      expect((await pushToWechat(gwSafe.baseUrl, safe, xml, { timestamp: seconds(Date.now() - 10 * 60_000) })).status).to.equal(401);
      await expectNothingKept(gwSafe, ticketIdFor('wechat', msgId), rej);
    });

    it('the timestamp is compared with the gateway clock, not the host clock', async () => {
      clockOffset = 60 * 60_000;
      try {
        const late = textXml('oClock', '按主机时间签名');
        expect((await pushToWechat(gwSafe.baseUrl, safe, late.xml)).status).to.equal(401);
        const onTime = textXml('oClock', '按网关时间签名');
        expect((await pushToWechat(gwSafe.baseUrl, safe, onTime.xml, { timestamp: seconds(Date.now() + clockOffset) })).status).to.equal(200);
        await gwSafe.created.waitFor((x) => x.body.id === ticketIdFor('wechat', onTime.msgId));
      } finally {
        clockOffset = 0;
      }
    });

    it('an unsigned 1 MB XML body → 401, and nothing is parsed, kept or rejected', async () => {
      const rej = gwSafe.rejected.messages.length;
      const created = gwSafe.created.messages.length;
      const filler = '<Content><![CDATA[marker-wx-big]]></Content>'.repeat(Math.floor(1_000_000 / 44));
      const body = `<xml><ToUserName><![CDATA[${GH}]]></ToUserName>${filler}</xml>`;
      expect(body.length).to.be.within(990_000, 1_048_576);
      const timestamp = seconds(Date.now());
      const nonce = randomNonce();
      const mark = safeLogs.mark();
      // No msg_signature at all.
      const a = await fetch(`${gwSafe.baseUrl}/wechat?${new URLSearchParams({ timestamp, nonce, encrypt_type: 'aes' })}`, { method: 'POST', headers: { 'Content-Type': 'text/xml' }, body });
      expect(a.status).to.equal(401);
      // A made-up msg_signature over a body with no <Encrypt>, and over one with a made-up <Encrypt>.
      const q = new URLSearchParams({ timestamp, nonce, encrypt_type: 'aes', msg_signature: 'a'.repeat(40) });
      const b = await fetch(`${gwSafe.baseUrl}/wechat?${q}`, { method: 'POST', headers: { 'Content-Type': 'text/xml' }, body });
      expect(b.status).to.equal(401);
      const withEncrypt = body.replace('</xml>', '<Encrypt><![CDATA[QUJDRA==]]></Encrypt></xml>');
      const c = await fetch(`${gwSafe.baseUrl}/wechat?${q}`, { method: 'POST', headers: { 'Content-Type': 'text/xml' }, body: withEncrypt });
      expect(c.status).to.equal(401);
      expect(await gwSafe.created.settle(() => true, 500)).to.have.length(created);
      expect(gwSafe.rejected.messages.length).to.equal(rej);
      expectLoggedWithoutBody(safeLogs, mark, 'wechat', 'marker-wx-big');
    });
  });

  describe('Weibo', () => {
    it('a forged signature → 401, no ticket, logged without the body', async () => {
      const sender = nextUid();
      const body = weiboPushBody({ type: 'text', senderId: sender, text: '伪造-marker-wb-forged' });
      const rej = gw.rejected.messages.length;
      const mark = logs.mark();
      const q = weiboQuery(Date.now());
      expect(await postWeibo(gw.baseUrl, { ...q, signature: weiboSignature('guessed-secret', q.timestamp, q.nonce) }, body)).to.equal(401);
      expect(await postWeibo(gw.baseUrl, { ...q, signature: '' }, body)).to.equal(401);
      expect(await gw.created.settle((x) => x.body.citizen.channelUserId === sender, 500)).to.have.length(0);
      expect(gw.rejected.messages.length).to.equal(rej);
      expectLoggedWithoutBody(logs, mark, 'weibo', 'marker-wb-forged');
    });

    it('a correctly signed push whose millisecond timestamp is outside WEBHOOK_MAX_SKEW → 401, no ticket', async () => {
      const sender = nextUid();
      const rej = gw.rejected.messages.length;
      const mark = logs.mark();
      const body = weiboPushBody({ type: 'text', senderId: sender, text: '过期-marker-wb-stale' });
      expect(await postWeibo(gw.baseUrl, weiboQuery(Date.now() - 10 * 60_000), body)).to.equal(401);
      expect(await postWeibo(gw.baseUrl, weiboQuery(Date.now() + 10 * 60_000), body)).to.equal(401);
      // Seconds where Weibo sends milliseconds: 1970 as far as the check is concerned.
      expect(await postWeibo(gw.baseUrl, weiboQuery(Math.floor(Date.now() / 1000)), body)).to.equal(401);
      expect(await gw.created.settle((x) => x.body.citizen.channelUserId === sender, 500)).to.have.length(0);
      expect(gw.rejected.messages.length).to.equal(rej);
      expectLoggedWithoutBody(logs, mark, 'weibo', 'marker-wb-stale');
    });

    it('a captured (timestamp, nonce, signature) cannot carry a push from another user', async () => {
      const q = weiboQuery(Date.now());
      const genuine = nextUid();
      expect(await postWeibo(gw.baseUrl, q, weiboPushBody({ type: 'text', senderId: genuine, text: '公交站牌倒了' }))).to.equal(200);
      await gw.created.waitFor((x) => x.body.citizen.channelUserId === genuine);
      const other = nextUid();
      const rej = gw.rejected.messages.length;
      const mark = logs.mark();
      expect(await postWeibo(gw.baseUrl, q, weiboPushBody({ type: 'text', senderId: other, text: '冒名-marker-wb-replay' }))).to.equal(401);
      expect(await gw.created.settle((x) => x.body.citizen.channelUserId === other, 500)).to.have.length(0);
      expect(gw.rejected.messages.length).to.equal(rej);
      expectLoggedWithoutBody(logs, mark, 'weibo', 'marker-wb-replay');
    });
  });

  describe('Telegram webhook', () => {
    it('a wrong or missing secret token → 401, no ticket, logged without the body', async () => {
      const u = makeUpdate({ text: '伪造-marker-tg-forged' });
      const rej = gw.rejected.messages.length;
      const mark = logs.mark();
      expect((await postWebhook(gw.baseUrl, 'guessed-secret', u)).status).to.equal(401);
      expect((await postWebhook(gw.baseUrl, TG_SECRET.slice(0, -1), u)).status).to.equal(401);
      expect((await postWebhook(gw.baseUrl, null, u)).status).to.equal(401);
      expect(await gw.created.settle((x) => x.body.id === ticketIdFor('telegram', String(u.update_id)), 500)).to.have.length(0);
      expect(gw.rejected.messages.length).to.equal(rej);
      expectLoggedWithoutBody(logs, mark, 'telegram', 'marker-tg-forged');
    });
  });
});
