import { createCipheriv } from 'node:crypto';
import { expect } from 'chai';
import fc from 'fast-check';
import { GatewayError } from '../../src/errors.js';
import { WechatCrypto, pkcs7Pad, pkcs7Unpad, wechatSignature, signatureMatches } from '../../src/channels/wechat/crypto.js';
import {
  cdata,
  classify,
  dedupeKeyFor,
  encryptElements,
  MAX_ENCRYPT_ELEMENTS,
  mediaFileName,
  mediaToFetch,
  mimeFor,
  parseEnvelope,
  parsePush,
  parseXmlFields,
  textReplyXml,
  toInbound,
  type WechatPush,
} from '../../src/channels/wechat/parse.js';
import { fcParams } from './runs.js';
import { aesKeyFrom, expectValidInbound, expectWellFormed, refusal, timed, toWellFormed } from './helpers.js';
import { anyString, doctypeXml, eol, escapeXml, pushXml, xmlSafeText } from './wechat.gen.js';

/**
 * WeChat official-account pushes: XML with random MsgType and fields, CDATA edge
 * cases, entities, DOCTYPEs; safe-mode envelopes with random keys, padding,
 * lengths and AppIDs.
 */

let uniq = 0;

// ---------------------------------------------------------------------------
// Checks

/**
 * The adapter only ever sees text decoded from UTF-8 (the HTTP body, or the decrypted
 * plaintext), which cannot hold a lone surrogate: generated input is made the same.
 */
function checkPush(input: string, encrypted = false): WechatPush | null {
  const xml = toWellFormed(input);
  const r = refusal('parsePush', () => parsePush(xml));
  if (!r.ok) return null;
  const push = r.value;
  for (const [k, v] of Object.entries(push)) expect(v, `field ${k}`).to.be.a('string');
  const kind = timed('classify', () => classify(push));
  expect(['message', 'event', 'unsupported']).to.include(kind.kind);
  expect(timed('dedupeKeyFor', () => dedupeKeyFor(push))).to.be.a('string').and.not.equal('');
  timed('mediaToFetch', () => mediaToFetch(push));
  if (kind.kind === 'message') {
    const inbound = timed('toInbound', () => toInbound(push, { raw: xml, encrypted }));
    expectValidInbound(inbound, 'wechat inbound');
    expect(inbound.channel).to.equal('wechat');
    if (push.MsgId) expect(inbound.dedupeKey).to.equal(push.MsgId);
  } else {
    // toInbound refuses with a typed error for anything that is not a citizen message.
    const t = refusal('toInbound(non-message)', () => toInbound(push, { raw: xml, encrypted }), ['INPUT_UNSUPPORTED']);
    if (t.ok) expectValidInbound(t.value, 'wechat inbound of a non-message');
  }
  return push;
}

/** AES-256-CBC without padding, as WeChat's servers do after their own 32-byte PKCS#7. */
function rawEncrypt(aesKey: string, plain: Buffer): string {
  const key = Buffer.from(`${aesKey}=`, 'base64');
  const c = createCipheriv('aes-256-cbc', key, key.subarray(0, 16));
  c.setAutoPadding(false);
  return Buffer.concat([c.update(plain), c.final()]).toString('base64');
}

const aesKey = fc.uint8Array({ minLength: 32, maxLength: 32 }).map(aesKeyFrom);
const appId = fc.oneof(fc.stringMatching(/^wx[0-9a-f]{16}$/), fc.string({ unit: 'binary', minLength: 1, maxLength: 30 }));

// ---------------------------------------------------------------------------

describe('fuzz: WeChat (push XML, safe-mode envelopes, AES, signatures)', function () {
  this.timeout(600_000);

  it('parsePush: arbitrary strings give a push or INPUT_INVALID', () => {
    fc.assert(
      fc.property(anyString, (s) => {
        checkPush(s);
        refusal('parseEnvelope', () => parseEnvelope(toWellFormed(s)));
      }),
      fcParams(),
    );
  });

  it('parsePush: structure-aware XML (random MsgType and fields, CDATA edge cases, entities, truncation) gives a valid Inbound or INPUT_INVALID', () => {
    let parsed = 0;
    fc.assert(
      fc.property(pushXml, (xml) => {
        if (checkPush(xml)) parsed++;
      }),
      fcParams(),
    );
    expect(parsed, 'a fair share of generated pushes parse').to.be.greaterThan(0);
  });

  it('parsePush: DOCTYPE entity bombs, recursive and external entities neither hang nor leak', () => {
    fc.assert(
      fc.property(doctypeXml, (xml) => {
        const push = checkPush(xml);
        if (push?.Content) {
          expect(push.Content).not.to.contain('root:');
          expect(push.Content.length).to.be.below(1_000_000);
        }
      }),
      fcParams(50),
    );
  });

  // A CreateTime of 11–12 digits (year 10000 and later) must not give a sentAt that
  // TicketV1 refuses: intake.accept would throw and the adapter answer 503 forever.
  it('toInbound: any CreateTime the schema accepts gives a sentAt the ticket schema accepts', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^\d{11,12}$/), (t) => {
        const push = parsePush(`<xml><ToUserName>gh</ToUserName><FromUserName>o1</FromUserName><CreateTime>${t}</CreateTime><MsgType>text</MsgType><Content>x</Content></xml>`);
        expectValidInbound(toInbound(push, { raw: '', encrypted: false }), 'wechat inbound');
      }),
      fcParams(),
    );
  });

  it('fields written as WeChat writes them come back exactly (CDATA verbatim, escaped text trimmed)', () => {
    fc.assert(
      fc.property(xmlSafeText, xmlSafeText, fc.boolean(), (content, from, useCdata) => {
        fc.pre(from.trim() !== '');
        const enc = (v: string) => (useCdata ? cdata(v) : escapeXml(v));
        const msgId = String(++uniq);
        const xml = `<xml><ToUserName>${enc('gh_1')}</ToUserName><FromUserName>${enc(from)}</FromUserName><CreateTime>1700000000</CreateTime><MsgType>${enc('text')}</MsgType><Content>${enc(content)}</Content><MsgId>${msgId}</MsgId></xml>`;
        const push = checkPush(xml);
        expect(push, `parses: ${xml}`).not.to.equal(null);
        // trimValues applies to text nodes only: CDATA is kept as sent. Line ends are
        // normalised to \n by every XML parser (XML 1.0 §2.11).
        const norm = (v: string) => eol(useCdata ? v : v.trim());
        expect(push!.FromUserName).to.equal(norm(from));
        expect(push!.Content ?? '').to.equal(norm(content));
        expect(push!.MsgId).to.equal(msgId);
      }),
      fcParams(),
    );
  });

  it('numeric character references of any code point (surrogates, NUL, beyond U+10FFFF) give well-formed text or INPUT_INVALID', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.integer({ min: 0, max: 0x11ffff }), fc.integer({ min: 0xd800, max: 0xdfff })), { minLength: 1, maxLength: 5 }), fc.boolean(), (cps, hex) => {
        const refs = cps.map((c) => (hex ? `&#x${c.toString(16)};` : `&#${c};`)).join('');
        checkPush(`<xml><ToUserName>g</ToUserName><FromUserName>o${refs}</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>a${refs}b</Content></xml>`);
      }),
      fcParams(),
    );
  });

  it('passive reply XML (textReplyXml / cdata) parses back to the same text', () => {
    fc.assert(
      fc.property(xmlSafeText, xmlSafeText, (content, user) => {
        fc.pre(user.trim() !== '');
        const xml = textReplyXml({ toUser: user, fromUser: 'gh_1', content, createTime: 1_700_000_000 });
        const f = timed('parseXmlFields', () => parseXmlFields(xml));
        expect(f.Content ?? '').to.equal(eol(content));
        expect(f.ToUserName).to.equal(eol(user));
      }),
      fcParams(),
    );
  });

  it('round trip: encrypt → <Encrypt> envelope → parseEnvelope → decrypt gives the XML and AppID back (random keys, AppIDs, texts)', () => {
    fc.assert(
      fc.property(aesKey, appId, fc.string({ unit: 'binary', maxLength: 400 }), fc.uint8Array({ minLength: 16, maxLength: 16 }), (key, app, xml, random) => {
        const c = new WechatCrypto(key, app);
        const encrypt = timed('encrypt', () => c.encrypt(xml, Buffer.from(random)));
        const envelope = `<xml><ToUserName>${cdata('gh_1')}</ToUserName><Encrypt>${cdata(encrypt)}</Encrypt></xml>`;
        const env = parseEnvelope(envelope);
        expect(env.encrypt).to.equal(encrypt);
        // The scan the adapter uses before any parse finds the same value.
        expect(encryptElements(envelope)).to.deep.equal([encrypt]);
        const d = timed('decrypt', () => c.decrypt(env.encrypt));
        expect(d).to.deep.equal({ message: xml, appId: app });
        expect(signatureMatches(wechatSignature('tok', '1', '2', encrypt), wechatSignature('2', encrypt, 'tok', '1'))).to.equal(true);
      }),
      fcParams(),
    );
  });

  it('encryptElements: arbitrary and structure-aware bodies give base64 values that stood in <Encrypt>, or INPUT_INVALID, within budget', () => {
    const base64 = fc.base64String({ minLength: 4, maxLength: 200 }).filter((b) => b.length > 0);
    const piece = fc.oneof(
      anyString,
      base64.map((b) => `<Encrypt>${cdata(b)}</Encrypt>`),
      base64.map((b) => `<Encrypt>\n ${b} \n</Encrypt>`),
      fc.constantFrom('<Encrypt>', '</Encrypt>', '<![CDATA[', ']]>', '<Encrypt><![CDATA[QUJD]]>', '<Encrypt a="1">QUJD</Encrypt>', '<xml>', '</xml>'),
    );
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 8 }), (pieces) => {
        const body = pieces.join('');
        const r = refusal('encryptElements', () => encryptElements(body));
        if (!r.ok) {
          expect(body.split('<Encrypt>').length - 1).to.be.greaterThan(MAX_ENCRYPT_ELEMENTS);
          return;
        }
        expect(r.value.length).to.be.at.most(MAX_ENCRYPT_ELEMENTS);
        for (const v of r.value) {
          expect(v).to.match(/^[A-Za-z0-9+/=]+$/);
          expect(body).to.contain(v);
        }
      }),
      fcParams(),
    );
  });

  it('encryptElements: a 1 MB adversarial body (long base64 runs without a closing tag, many tags) is scanned within budget', () => {
    const run = 'A'.repeat(250_000);
    for (const body of [
      `<xml><Encrypt>${run}</Encryp></xml>`,
      `<Encrypt><![CDATA[${run}]]</Encrypt>`.repeat(4),
      '<Encrypt>'.repeat(120_000),
      `<xml>${'<a>'.repeat(300_000)}<Encrypt>${cdata('QUJD')}</Encrypt></xml>`,
    ]) {
      refusal('encryptElements', () => encryptElements(body));
    }
    expect(encryptElements(`<xml>${'<a>'.repeat(300_000)}<Encrypt>${cdata('QUJD')}</Encrypt></xml>`)).to.deep.equal(['QUJD']);
  });

  it('decrypt: crafted plaintexts with random padding bytes, lengths and AppIDs give the message or INPUT_INVALID / AUTH_FAILED', () => {
    const KEY = 'jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C';
    const APP = 'wx5823bf96d3bd56c7';
    const crypto = new WechatCrypto(KEY, APP);
    fc.assert(
      fc.property(
        fc.record({
          random: fc.uint8Array({ minLength: 0, maxLength: 20 }),
          lenMode: fc.constantFrom('exact', 'exact', 'random', 'huge', 'short'),
          lenRandom: fc.nat(0xffffffff),
          msg: fc.oneof(fc.string({ unit: 'binary', maxLength: 200 }).map((s) => Buffer.from(s, 'utf8')), fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a))),
          app: fc.oneof({ weight: 3, arbitrary: fc.constant(APP) }, { weight: 1, arbitrary: appId }),
          padMode: fc.constantFrom('valid32', 'valid32', 'valid16', 'zero', 'random', 'over', 'inconsistent'),
          padRandom: fc.uint8Array({ minLength: 1, maxLength: 64 }),
        }),
        ({ random, lenMode, lenRandom, msg, app, padMode, padRandom }) => {
          const len = Buffer.alloc(4);
          const lenValue = lenMode === 'exact' ? msg.length : lenMode === 'random' ? lenRandom : lenMode === 'huge' ? 0xffffffff : Math.max(0, msg.length - 1);
          len.writeUInt32BE(lenValue >>> 0, 0);
          const body = Buffer.concat([Buffer.from(random), len, msg, Buffer.from(app, 'utf8')]);
          let plain: Buffer;
          if (padMode === 'valid32') plain = pkcs7Pad(body, 32);
          else if (padMode === 'valid16') plain = pkcs7Pad(body, 16);
          else {
            const extra = Buffer.from(padRandom);
            if (padMode === 'zero') extra.fill(0);
            if (padMode === 'over') extra.fill(33);
            if (padMode === 'inconsistent') extra[extra.length - 1] = Math.min(extra.length, 32);
            plain = Buffer.concat([body, extra]);
            const rest = plain.length % 16;
            if (rest) plain = Buffer.concat([plain, Buffer.alloc(16 - rest, 16 - rest)]);
          }
          const r = refusal('decrypt', () => crypto.decrypt(rawEncrypt(KEY, plain)), ['INPUT_INVALID', 'AUTH_FAILED']);
          if (r.ok) {
            expect(r.value.appId).to.equal(APP);
            expectWellFormed(r.value.message, 'decrypted message');
            const wellBuilt = random.length === 16 && lenMode === 'exact' && padMode === 'valid32' && app === APP;
            if (wellBuilt) expect(r.value.message).to.equal(msg.toString('utf8'));
          } else if (random.length === 16 && lenMode === 'exact' && padMode === 'valid32' && app === APP) {
            throw new Error(`a well-built message was refused: ${r.error.message}`);
          }
        },
      ),
      fcParams(),
    );
  });

  it('decrypt: arbitrary <Encrypt> strings (base64 or not, any length) give INPUT_INVALID / AUTH_FAILED, never an exception', () => {
    const crypto = new WechatCrypto('jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C', 'wx5823bf96d3bd56c7');
    fc.assert(
      fc.property(
        fc.oneof(fc.string({ maxLength: 200 }), fc.base64String({ maxLength: 400 }), fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a).toString('base64'))),
        fc.uint8Array({ maxLength: 100 }),
        (s, pad) => {
          refusal('decrypt', () => crypto.decrypt(s), ['INPUT_INVALID', 'AUTH_FAILED']);
          const r = refusal('pkcs7Unpad', () => pkcs7Unpad(Buffer.from(pad)));
          if (r.ok) expect(r.value.length).to.be.below(pad.length);
        },
      ),
      fcParams(),
    );
  });

  it('a wrong EncodingAESKey is a CONFIG_INVALID error at construction, never later', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 60 }), (key) => {
        try {
          new WechatCrypto(key, 'wx1');
        } catch (err) {
          expect(err).to.be.instanceOf(GatewayError);
          expect((err as GatewayError).code).to.equal('CONFIG_INVALID');
        }
      }),
      fcParams(),
    );
  });

  it('media file names and types from any Content-Type / Content-Disposition / Format', () => {
    fc.assert(
      fc.property(
        fc.string({ maxLength: 80 }),
        fc.constantFrom<'image' | 'voice'>('image', 'voice'),
        fc.option(fc.oneof(fc.string({ maxLength: 40 }), fc.constantFrom('image/png', 'audio/amr; x=1', 'application/octet-stream')), { nil: null }),
        fc.option(fc.string({ maxLength: 30 }), { nil: undefined }),
        (mediaId, kind, contentType, format) => {
          const mime = timed('mimeFor', () => mimeFor(kind, contentType, format));
          expect(mime).to.contain('/');
          const name = timed('mediaFileName', () => mediaFileName(mediaId, kind, contentType, null, format));
          expect(name).to.be.a('string').and.not.equal('');
          expect(name).not.to.match(/[/\\]/);
        },
      ),
      fcParams(),
    );
  });

  it('mediaFileName: any Format gives a file name without path separators', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 30 }), (format) => {
        expect(timed('mediaFileName', () => mediaFileName('m1', 'voice', null, null, format))).not.to.match(/[/\\]/);
      }),
      fcParams(),
    );
  });

  it('mediaFileName: any Content-Disposition (malformed %-escapes, separators, dots) gives a plain file name', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 60 }), fc.constantFrom('%E4%B8', '..%2F..%2Fetc%2Fpasswd', '%', '....', '%00x')), (v) => {
        const name = timed('mediaFileName', () => mediaFileName('m1', 'image', 'image/jpeg', `attachment; filename="${v}"`));
        expect(name).to.be.a('string').and.not.equal('');
        expect(name).not.to.match(/[/\\]/);
      }),
      fcParams(),
    );
  });
});
