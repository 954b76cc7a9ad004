import { expect } from 'chai';
import fc from 'fast-check';
import { classify, dedupeKeyFor, parseCreatedAt, parseJsonKeepingIds, parsePush, toInbound, verifyWeiboSignature, weiboSignature, type WeiboPush } from '../../src/channels/weibo/parse.js';
import { fcParams } from './runs.js';
import { expectSentAt, expectValidInbound, refusal, timed, toWellFormed } from './helpers.js';
import { anyJsonText, loneSurrogateText, mutate, mutation, ws } from './json.js';
import { createdAt, ID_KEYS, pushText } from './weibo.gen.js';

/**
 * Weibo fans-service pushes: JSON with random types, int64 ids written as bare
 * numbers (beyond 2^53), missing and ill-typed fields, broken JSON.
 */

/** What JSON.parse gives, with integer values of the id keys as their decimal text. */
function expectedKeepingIds(text: string): unknown {
  // The texts here come from JSON.stringify, so a number's text is JSON.stringify(value).
  return JSON.parse(text, function (this: unknown, key: string, value: unknown) {
    if (typeof value === 'number' && ID_KEYS.has(key) && !Array.isArray(this)) {
      const t = JSON.stringify(value);
      if (/^-?\d+$/.test(t)) return t;
    }
    return value;
  });
}

function checkPush(text: string): WeiboPush | null {
  const r = refusal('parsePush', () => parsePush(text));
  if (!r.ok) return null;
  const push = r.value;
  expect(push.sender_id).to.match(/^\d{1,20}$/);
  expect(push.receiver_id).to.match(/^\d{1,20}$/);
  const kind = timed('classify', () => classify(push));
  expect(['message', 'event', 'unsupported']).to.include(kind.kind);
  expect(timed('dedupeKeyFor', () => dedupeKeyFor(push))).to.be.a('string');
  if (kind.kind === 'message') {
    const inbound = timed('toInbound', () => toInbound(push, text));
    expectValidInbound(inbound, 'weibo inbound');
    expect(inbound.channel).to.equal('weibo');
    expect(inbound.citizen.channelUserId).to.equal(push.sender_id);
  }
  return push;
}

describe('fuzz: Weibo (push JSON, int64 ids, signatures)', function () {
  this.timeout(600_000);

  it('parseJsonKeepingIds agrees with JSON.parse on any JSON text, except that integer ids keep their digits', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          anyJsonText,
          fc.json({ maxDepth: 3 }).map((t) => JSON.stringify(JSON.parse(t), null, 2)),
          fc.dictionary(fc.constantFrom(...ID_KEYS, 'x', 'text'), fc.oneof(fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.string(), fc.constant(null))).map((o) => JSON.stringify({ a: [o, { data: o }], ...o })),
        ),
        (text) => {
          const got = timed('parseJsonKeepingIds', () => parseJsonKeepingIds(text));
          expect(got).to.deep.equal(expectedKeepingIds(text));
        },
      ),
      fcParams(),
    );
  });

  it('parseJsonKeepingIds keeps bare int64 ids exact, wherever they are', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), fc.constantFrom(...ID_KEYS), ws, ws, (n, key, a, b) => {
        const text = `{"text":"\\"${key}\\":1","data":{${a}"${key}"${b}:${b}${n}${a}},"${key}":${n},"list":[{"${key}":${n}}]}`;
        const v = timed('parseJsonKeepingIds', () => parseJsonKeepingIds(text)) as Record<string, any>;
        expect(v[key]).to.equal(String(n));
        expect(v.data[key]).to.equal(String(n));
        expect(v.list[0][key]).to.equal(String(n));
        expect(v.text).to.equal(`"${key}":1`);
      }),
      fcParams(),
    );
  });

  it('parseJsonKeepingIds / parsePush: broken or arbitrary text is INPUT_INVALID (or a parse), never an exception or a hang', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 200 }), fc.string({ unit: 'binary', maxLength: 200 }), anyJsonText.chain((t) => mutation.map((m) => mutate(t, m)))), (text) => {
        checkPush(toWellFormed(text));
        try {
          timed('parseJsonKeepingIds', () => parseJsonKeepingIds(text));
        } catch (err) {
          expect(err, String(err)).to.be.instanceOf(SyntaxError);
        }
      }),
      fcParams(),
    );
  });

  it('parsePush: structure-aware pushes (random types, huge ids, missing fields, broken JSON) give a valid Inbound or INPUT_INVALID', () => {
    let parsed = 0;
    fc.assert(
      fc.property(pushText, ({ text, senderId, mutated, dup }) => {
        // Bodies arrive as UTF-8: a mutation that split a surrogate pair reaches the parser as U+FFFD.
        const push = checkPush(toWellFormed(text));
        if (!push) return;
        parsed++;
        if (!mutated && !dup && /^\d{1,20}$/.test(senderId)) expect(push.sender_id, 'int64 sender kept exactly').to.equal(senderId);
      }),
      fcParams(),
    );
    expect(parsed).to.be.greaterThan(0);
  });

  it('parseCreatedAt: any text gives null or a date the ticket schema accepts', () => {
    fc.assert(
      fc.property(createdAt, (s) => {
        const d = timed('parseCreatedAt', () => parseCreatedAt(s));
        expectSentAt(d, `parseCreatedAt(${JSON.stringify(s)})`);
      }),
      fcParams(),
    );
  });

  // A JSON escape of a lone surrogate ("text":"a\ud800") is legal JSON and survives the
  // UTF-8 body decoding: it must not reach the ticket ill-formed.
  it('toInbound: content is well-formed even when the JSON escapes a lone surrogate', () => {
    fc.assert(
      fc.property(loneSurrogateText, (t) => {
        checkPush(`{"type":"text","sender_id":1,"receiver_id":2,"created_at":"x","text":${t}}`);
      }),
      fcParams(),
    );
  });

  it('signatures: any query gives true or false, and a correct one verifies', () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), fc.string(), fc.option(fc.anything(), { nil: undefined }), (secret, timestamp, nonce, junk) => {
        const sig = weiboSignature(secret, timestamp, nonce);
        expect(verifyWeiboSignature(secret, { signature: sig.toUpperCase(), timestamp, nonce })).to.equal(true);
        expect(typeof verifyWeiboSignature(secret, { signature: junk, timestamp: junk, nonce })).to.equal('boolean');
      }),
      fcParams(),
    );
  });
});
