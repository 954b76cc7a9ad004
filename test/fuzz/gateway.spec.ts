import { expect } from 'chai';
import fc from 'fast-check';
import { TicketV1, type Channel } from '../../src/ticket.js';
import { GatewayError } from '../../src/errors.js';
import { WechatCrypto, wechatSignature } from '../../src/channels/wechat/crypto.js';
import { cdata, classify as wxClassify, parseEnvelope, parsePush as wxParsePush, toInbound as wxToInbound } from '../../src/channels/wechat/parse.js';
import { classify as wbClassify, parsePush as wbParsePush, toInbound as wbToInbound, weiboSignature } from '../../src/channels/weibo/parse.js';
import { classify as tgClassify, parseUpdate, toInbound as tgToInbound } from '../../src/channels/telegram/parse.js';
import type { Inbound } from '../../src/channels/types.js';
import { cleanText } from '../../src/normalize/text.js';
import { AppTicketRequest } from '../../src/channels/app/parse.js';
import { startTestGateway, TEST_API_KEY, waitUntil, type TestGateway } from '../support/gateway.js';
import { startFakeWechat, type FakeWechat } from '../support/fake-wechat.js';
import { startFakeWeibo, type FakeWeibo } from '../support/fake-weibo.js';
import { startFakeTelegram, type FakeTelegram } from '../support/fake-telegram.js';
import { fcParams, GATEWAY_RUNS } from './runs.js';
import { toWellFormed } from './helpers.js';
import { anyString, pushXml } from './wechat.gen.js';
import { pushText } from './weibo.gen.js';
import { updateText } from './telegram.gen.js';
import { appBodyText } from './app.gen.js';
import { anyJsonText } from './json.js';
import { STATUS_QUERY_CHANNELS, statusQueryNumber } from '../../src/channels/status-query.js';

/**
 * Fuzzed bodies through one real gateway (all HTTP intakes on, real RabbitMQ):
 * never a 5xx other than 503, never a crash (/healthz stays 200), and every input
 * the platform takes as delivered (2xx) that is not an event or a duplicate ends
 * as exactly one ticket on tickets.created or one record on intake.rejected.
 */

const WX = { token: 'wx_fuzz_token', appId: 'wx5823bf96d3bd56c7', appSecret: 'fuzz-app-secret', aesKey: 'jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C' };
const WB = { secret: 'weibo-fuzz-secret', accessToken: 'weibo-fuzz-token' };
const TG = { token: '123456789:AAfuzz-token_for-the-fake-bot-api', secret: 'fuzz-webhook-secret_0123' };

/** What the platform saw and what the gateway must therefore have recorded, per channel. */
interface Ledger {
  requests: number;
  status: Record<number, number>;
  /** Records the 2xx answers call for, summed over the tests of the channel. */
  tickets: number;
  rejected: number;
  /** 503 answers with the input, for the report: a 503 while the store is healthy means input retried forever. */
  unavailable: string[];
}
const ledger = (): Ledger => ({ requests: 0, status: {}, tickets: 0, rejected: 0, unavailable: [] });

/** What one test's 2xx answers call for. */
interface Expect {
  tickets: number;
  rejected: number;
}
const expectNone = (): Expect => ({ tickets: 0, rejected: 0 });

/**
 * What intake.accept does with an Inbound, as its contract says: no content, subject,
 * attachment or location → one empty-content rejection per dedupe key; otherwise one
 * ticket per dedupe key (later ones are duplicates). Media downloads fail against
 * the fakes, so the adapters pass no attachments.
 */
class AcceptModel {
  private readonly tickets = new Set<string>();
  private readonly empties = new Set<string>();
  outcome(inbound: Inbound): 'ticket' | 'rejected' | 'none' {
    const key = inbound.dedupeKey;
    const empty = !cleanText(inbound.content) && !(inbound.subject && cleanText(inbound.subject)) && inbound.attachments.length === 0 && !inbound.location;
    // A message that is only a status query is answered, never a ticket (channels/status-query.ts).
    if (!empty && STATUS_QUERY_CHANNELS.has(inbound.channel) && !(inbound.subject && cleanText(inbound.subject)) && inbound.attachments.length === 0 && !inbound.location && statusQueryNumber(cleanText(inbound.content))) return 'none';
    const seen = empty ? this.empties : this.tickets;
    if (seen.has(key)) return 'none';
    seen.add(key);
    return empty ? 'rejected' : 'ticket';
  }
}

function add(e: Expect, o: 'ticket' | 'rejected' | 'none'): void {
  if (o === 'ticket') e.tickets++;
  if (o === 'rejected') e.rejected++;
}

/** What a server-side UTF-8 decoder makes of our body (fetch encodes lone surrogates as U+FFFD; body-parser drops a BOM). */
const asReceived = (s: string) => toWellFormed(s).replace(/^\ufeff/, '');

describe('fuzz: HTTP intakes through the real gateway', function () {
  this.timeout(900_000);
  let wx: FakeWechat;
  let wb: FakeWeibo;
  let tgApi: FakeTelegram;
  let gw: TestGateway;
  const books: Partial<Record<Channel, Ledger>> = {};
  const crypto = new WechatCrypto(WX.aesKey, WX.appId);

  before(async () => {
    wx = await startFakeWechat({ appId: WX.appId, appSecret: WX.appSecret });
    wb = await startFakeWeibo({ accessToken: WB.accessToken });
    tgApi = await startFakeTelegram({ token: TG.token });
    gw = await startTestGateway({
      APP_RATE_LIMIT: 1_000_000,
      WECHAT_TOKEN: WX.token,
      WECHAT_APP_ID: WX.appId,
      WECHAT_APP_SECRET: WX.appSecret,
      WECHAT_ENCODING_AES_KEY: WX.aesKey,
      WECHAT_API_URL: wx.url,
      WECHAT_MEDIA_TIMEOUT: '300ms',
      WEIBO_APP_SECRET: WB.secret,
      WEIBO_ACCESS_TOKEN: WB.accessToken,
      WEIBO_API_URL: wb.url,
      TELEGRAM_BOT_TOKEN: TG.token,
      TELEGRAM_WEBHOOK_SECRET: TG.secret,
      TELEGRAM_API_URL: tgApi.url,
      TELEGRAM_MEDIA_TIMEOUT: '300ms',
      SEND_MAX_ATTEMPTS: 1,
    });
  });

  after(async () => {
    await gw?.stop();
    await Promise.all([wx?.close(), wb?.close(), tgApi?.close()]);
    for (const [ch, b] of Object.entries(books)) {
      // The numbers go in the fuzz report; 503s are listed for the channel owners.
      console.log(`    gateway fuzz ${ch}: ${b.requests} requests, status ${JSON.stringify(b.status)}; records expected: tickets ${b.tickets}, rejected ${b.rejected}`);
      for (const u of b.unavailable.slice(0, 3)) console.log(`      503 for: ${u.slice(0, 300)}`);
    }
  });

  function book(ch: Channel): Ledger {
    return (books[ch] ??= ledger());
  }

  function noteStatus(ch: Channel, status: number, input: string): void {
    const b = book(ch);
    b.requests++;
    b.status[status] = (b.status[status] ?? 0) + 1;
    expect(status >= 500 && status !== 503, `${ch}: HTTP ${status} for ${JSON.stringify(input.slice(0, 500))}`).to.equal(false);
    if (status === 503) b.unavailable.push(input);
  }

  const count = (ch: Channel) => ({
    tickets: gw.created.messages.filter((m) => m.body.channel === ch).length,
    rejected: gw.rejected.messages.filter((m) => m.body.channel === ch).length,
  });

  /** Every delivered input is on the broker: exactly as many tickets and rejected records as expected. */
  async function reconcile(ch: Channel, before: { tickets: number; rejected: number }, e: Expect): Promise<void> {
    const b = book(ch);
    b.tickets += e.tickets;
    b.rejected += e.rejected;
    const h = await fetch(`${gw.baseUrl}/healthz`);
    expect(h.status, '/healthz').to.equal(200);
    const want = () => {
      const c = count(ch);
      const t = c.tickets - before.tickets;
      const r = c.rejected - before.rejected;
      return { t, r, ok: t >= e.tickets && r >= e.rejected };
    };
    await waitUntil(() => want().ok, 30_000, `${ch}: records for every delivered input (expected ${JSON.stringify(e)})`).catch((err: Error) => {
      throw new Error(`${err.message}; got ${JSON.stringify(want())}`);
    });
    await new Promise((r) => setTimeout(r, 700));
    const got = want();
    expect({ tickets: got.t, rejected: got.r }, `${ch}: one record per delivered input, no more`).to.deep.equal(e);
    // Every ticket published from fuzzed input still matches the contract's schema.
    for (const m of gw.created.messages.filter((x) => x.body.channel === ch).slice(before.tickets)) {
      const v = TicketV1.safeParse(m.body);
      expect(v.success, `${ch}: published ticket fails TicketV1: ${v.success ? '' : JSON.stringify(v.error.issues)}`).to.equal(true);
    }
  }

  // -------------------------------------------------------------------------
  it('app API: fuzzed JSON bodies → 2xx/4xx only; every 202 is a ticket', async () => {
    const before = count('app');
    const seen = new Set<string>();
    const seenEmpty = new Set<string>();
    const e = expectNone();
    await fc.assert(
      fc.asyncProperty(fc.oneof({ weight: 4, arbitrary: appBodyText }, { weight: 1, arbitrary: anyJsonText }), fc.constantFrom('application/json', 'application/json; charset=utf-8', 'text/plain'), async (body, type) => {
        const r = await fetch(`${gw.baseUrl}/api/v1/tickets`, { method: 'POST', headers: { 'content-type': type, authorization: `Bearer ${TEST_API_KEY}` }, body });
        const text = await r.text();
        noteStatus('app', r.status, body);
        let parsed: unknown;
        try {
          parsed = JSON.parse(asReceived(body));
        } catch {
          parsed = undefined;
        }
        const req = AppTicketRequest.safeParse(parsed);
        const key = req.success ? req.data.clientMessageId : null;
        if (r.status === 202) {
          expect(key, `202 for a body the schema refuses: ${body}`).not.to.equal(null);
          expect(seen.has(key!), `202 (new ticket) for a clientMessageId seen before: ${key}`).to.equal(false);
          e.tickets++;
        } else if (r.status === 422) {
          // Empty content: recorded on intake.rejected once per message.
          if (key !== null && !seenEmpty.has(key)) e.rejected++;
          if (key !== null) seenEmpty.add(key);
        } else if (r.status === 200) {
          expect(key !== null && seen.has(key), `200 (duplicate) for a new clientMessageId: ${body} → ${text}`).to.equal(true);
        }
        if (r.status === 202 || r.status === 200) seen.add(key!);
      }),
      fcParams(GATEWAY_RUNS),
    );
    await reconcile('app', before, e);
  });

  it('Open311: fuzzed form bodies → 2xx/4xx only; every 201 is a ticket', async () => {
    const before = count('app');
    const e = expectNone();
    const field = fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 40 }), fc.double().map(String), fc.constantFrom('', ' ', 'NaN', 'Infinity', '1e400', '-0'));
    await fc.assert(
      fc.asyncProperty(
        fc.record(
          {
            service_code: fc.oneof(fc.constantFrom('complaint', 'help', 'report', 'unknown'), field),
            lat: field,
            long: field,
            address_string: field,
            description: field,
            media_url: field,
            phone: field,
            email: field,
            first_name: field,
            account_id: field,
          },
          { requiredKeys: [] },
        ),
        fc.array(fc.tuple(fc.string({ maxLength: 10 }), fc.string({ maxLength: 10 })), { maxLength: 3 }),
        async (fields, extra) => {
          const form = new URLSearchParams({ api_key: TEST_API_KEY, ...fields });
          for (const [k, v] of extra) form.append(k, v);
          const body = form.toString();
          const r = await fetch(`${gw.baseUrl}/open311/v2/requests.json`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });
          const text = await r.text();
          noteStatus('app', r.status, body);
          if (r.status === 201) e.tickets++;
          // An empty description passes the schema and is recorded as an empty-content rejection.
          if (r.status === 400 && text.includes('description or media_url is required')) e.rejected++;
        },
      ),
      fcParams(GATEWAY_RUNS),
    );
    await reconcile('app', before, e);
  });

  /**
   * Restart on the same data dir and vhost. Publishing is at least once: rows the old
   * process had not yet cleared are published again by the new one, so the counts a
   * test starts from are taken only once the backlog is empty and those copies are in.
   */
  async function restartWith(overrides: Record<string, unknown>): Promise<void> {
    await gw.restart(overrides);
    await waitUntil(async () => ((await (await fetch(`${gw.baseUrl}/readyz`)).json()) as { backlog: number }).backlog === 0, 30_000, 'backlog published');
    await new Promise((r) => setTimeout(r, 1000));
  }

  // -------------------------------------------------------------------------
  const wxModel = new AcceptModel();
  /** What the WeChat adapter records for (decrypted or plain) XML, by its documented behaviour. */
  function wechatOutcome(xml: string, encrypted: boolean): 'ticket' | 'rejected' | 'none' {
    let push;
    try {
      push = wxParsePush(xml);
    } catch {
      return 'rejected'; // parse_error
    }
    const kind = wxClassify(push);
    if (kind.kind === 'event') return 'none';
    if (kind.kind === 'unsupported') return 'rejected';
    return wxModel.outcome(wxToInbound(push, { raw: xml, encrypted }));
  }

  it('WeChat plaintext push: fuzzed XML with correct signatures → 200 "success"/reply, each message recorded', async () => {
    // With an EncodingAESKey set plaintext pushes are refused (401): this one runs without it.
    await restartWith({ WECHAT_ENCODING_AES_KEY: '' });
    const before = count('wechat');
    const e = expectNone();
    await fc.assert(
      fc.asyncProperty(fc.oneof({ weight: 4, arbitrary: pushXml }, { weight: 1, arbitrary: anyString }), async (xml) => {
        const timestamp = String(Math.floor(Date.now() / 1000));
        const nonce = String(Math.floor(Math.random() * 1e9));
        const q = new URLSearchParams({ signature: wechatSignature(WX.token, timestamp, nonce), timestamp, nonce, openid: 'oFuzz' });
        const r = await fetch(`${gw.baseUrl}/wechat?${q}`, { method: 'POST', headers: { 'content-type': 'text/xml' }, body: xml });
        await r.text();
        noteStatus('wechat', r.status, xml);
        if (r.status >= 200 && r.status < 300) add(e, wechatOutcome(asReceived(xml), false));
      }),
      fcParams(GATEWAY_RUNS),
    );
    await reconcile('wechat', before, e);
  });

  it('WeChat safe mode: fuzzed XML encrypted, and fuzzed <Encrypt> values, with correct msg_signature → records as documented', async () => {
    // Safe mode whatever the test before left configured.
    await restartWith({ WECHAT_ENCODING_AES_KEY: WX.aesKey });
    const before = count('wechat');
    const e = expectNone();
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          { weight: 4, arbitrary: pushXml.map((xml) => ({ kind: 'xml' as const, xml, encrypt: crypto.encrypt(asReceived(xml)) })) },
          { weight: 1, arbitrary: fc.oneof(fc.base64String({ maxLength: 200 }), fc.string({ maxLength: 100 }).filter((s) => s.trim() !== '')).map((encrypt) => ({ kind: 'junk' as const, xml: '', encrypt })) },
        ),
        async ({ kind, xml, encrypt }) => {
          const body = `<xml><ToUserName>${cdata('gh_fuzz')}</ToUserName><Encrypt>${cdata(encrypt)}</Encrypt></xml>`;
          let envelope: string;
          try {
            envelope = parseEnvelope(asReceived(body)).encrypt;
          } catch {
            envelope = encrypt;
          }
          const timestamp = String(Math.floor(Date.now() / 1000));
          const nonce = String(Math.floor(Math.random() * 1e9));
          const q = new URLSearchParams({
            signature: wechatSignature(WX.token, timestamp, nonce),
            timestamp,
            nonce,
            encrypt_type: 'aes',
            msg_signature: wechatSignature(WX.token, timestamp, nonce, envelope),
          });
          const r = await fetch(`${gw.baseUrl}/wechat?${q}`, { method: 'POST', headers: { 'content-type': 'text/xml' }, body });
          await r.text();
          noteStatus('wechat', r.status, kind === 'xml' ? xml : body);
          if (r.status < 200 || r.status >= 300) return;
          if (kind === 'xml') {
            add(e, wechatOutcome(asReceived(xml), true));
            return;
          }
          // A signed envelope that does not decrypt is kept as decrypt_error; another AppID is a 401.
          try {
            const d = crypto.decrypt(envelope);
            add(e, wechatOutcome(d.message, true));
          } catch (err) {
            if (err instanceof GatewayError && err.code === 'INPUT_INVALID') e.rejected++;
          }
        },
      ),
      fcParams(GATEWAY_RUNS),
    );
    await reconcile('wechat', before, e);
  });

  // -------------------------------------------------------------------------
  it('Weibo push: fuzzed JSON with correct signatures → 200, each message recorded', async () => {
    const before = count('weibo');
    const model = new AcceptModel();
    const e = expectNone();
    await fc.assert(
      fc.asyncProperty(fc.oneof({ weight: 4, arbitrary: pushText.map((p) => p.text) }, { weight: 1, arbitrary: fc.oneof(anyJsonText, fc.string({ maxLength: 200 })) }), async (text) => {
        const timestamp = String(Date.now());
        const nonce = String(Math.floor(Math.random() * 1e8));
        const q = new URLSearchParams({ signature: weiboSignature(WB.secret, timestamp, nonce), timestamp, nonce });
        const r = await fetch(`${gw.baseUrl}/weibo?${q}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: text });
        await r.text();
        noteStatus('weibo', r.status, text);
        if (r.status < 200 || r.status >= 300) return;
        let push;
        try {
          push = wbParsePush(asReceived(text));
        } catch {
          e.rejected++;
          return;
        }
        const kind = wbClassify(push);
        if (kind.kind === 'event') return;
        if (kind.kind === 'unsupported') {
          e.rejected++;
          return;
        }
        add(e, model.outcome(wbToInbound(push, text)));
      }),
      fcParams(GATEWAY_RUNS),
    );
    await reconcile('weibo', before, e);
  });

  // -------------------------------------------------------------------------
  it('Telegram webhook: fuzzed Update JSON with the secret token → 200, each message recorded', async () => {
    const before = count('telegram');
    const model = new AcceptModel();
    const e = expectNone();
    await fc.assert(
      fc.asyncProperty(fc.oneof({ weight: 4, arbitrary: updateText.map((u) => u.text) }, { weight: 1, arbitrary: fc.oneof(anyJsonText, fc.string({ maxLength: 200 })) }), async (text) => {
        const r = await fetch(`${gw.baseUrl}/telegram/webhook`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-telegram-bot-api-secret-token': TG.secret }, body: text });
        await r.text();
        noteStatus('telegram', r.status, text);
        if (r.status < 200 || r.status >= 300) return;
        let value: unknown;
        try {
          value = JSON.parse(asReceived(text));
        } catch {
          value = undefined;
        }
        let update;
        try {
          update = parseUpdate(value);
        } catch {
          e.rejected++;
          return;
        }
        const kind = tgClassify(update);
        if (kind.kind === 'ignored' || kind.kind === 'start') return;
        if (kind.kind === 'unsupported') {
          e.rejected++;
          return;
        }
        add(e, model.outcome(tgToInbound(update, { raw: text })));
      }),
      fcParams(GATEWAY_RUNS),
    );
    await reconcile('telegram', before, e);
  });

  it('the gateway is still healthy after all of it', async () => {
    const r = await fetch(`${gw.baseUrl}/healthz`);
    expect(r.status).to.equal(200);
    const ready = await fetch(`${gw.baseUrl}/readyz`);
    expect(ready.status).to.be.below(500);
  });
});
