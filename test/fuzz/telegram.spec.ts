import { expect } from 'chai';
import fc from 'fast-check';
import { classify, fileMeta, normalizePhone, parseUpdate, pickPhoto, toInbound, type TelegramUpdate } from '../../src/channels/telegram/parse.js';
import { splitText } from '../../src/channels/telegram/adapter.js';
import { fcParams } from './runs.js';
import { expectValidInbound, expectWellFormed, refusal, timed, toWellFormed } from './helpers.js';
import { anyJsonText, jsonSafeText, loneSurrogateText } from './json.js';
import { nextUpdateId, updateText } from './telegram.gen.js';

/**
 * Telegram Bot API updates: random message kinds, ids up to and beyond 2^53,
 * missing and ill-typed fields, unknown update types, broken JSON.
 */


function checkUpdate(value: unknown, raw: string): TelegramUpdate | null {
  const r = refusal('parseUpdate', () => parseUpdate(value));
  if (!r.ok) return null;
  const u = r.value;
  const c = timed('classify', () => classify(u));
  expect(['message', 'start', 'unsupported', 'ignored']).to.include(c.kind);
  if (c.kind === 'message') {
    const inbound = timed('toInbound', () => toInbound(u, { raw }));
    expectValidInbound(inbound, 'telegram inbound');
    expect(inbound.channel).to.equal('telegram');
    expect(inbound.dedupeKey).to.equal(String(u.update_id));
  } else {
    refusal('toInbound(non-message)', () => toInbound(u, { raw }), ['INPUT_UNSUPPORTED']);
  }
  return u;
}

/** As the webhook does: JSON.parse, and on failure hand `undefined` to the parser. */
function fromText(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

describe('fuzz: Telegram (Update JSON)', function () {
  this.timeout(600_000);

  it('parseUpdate: any JSON value or broken text gives an Update or INPUT_INVALID', () => {
    fc.assert(
      fc.property(fc.oneof(anyJsonText, fc.string({ maxLength: 100 }), fc.anything().map((v) => JSON.stringify(v) ?? 'null')), (text) => {
        checkUpdate(fromText(toWellFormed(text)), text);
      }),
      fcParams(),
    );
  });

  it('parseUpdate: JS values of any shape (as getUpdates hands them over) never throw anything but INPUT_INVALID', () => {
    fc.assert(
      fc.property(fc.anything({ withNullPrototype: true, withBigInt: true, withDate: true, withMap: true, withTypedArray: true, withSparseArray: true }), (v) => {
        checkUpdate(v, '');
        checkUpdate({ update_id: 1, message: v }, '');
      }),
      fcParams(),
    );
  });

  it('structure-aware updates (random kinds, huge ids, missing fields, /start, broken JSON) give a valid Inbound or a typed refusal', () => {
    let messages = 0;
    fc.assert(
      fc.property(updateText, ({ text }) => {
        // Bodies arrive as UTF-8: a mutation that split a surrogate pair reaches the parser as U+FFFD.
        const u = checkUpdate(fromText(toWellFormed(text)), text);
        if (u && classify(u).kind === 'message') messages++;
      }),
      fcParams(),
    );
    expect(messages).to.be.greaterThan(0);
  });

  // Any integer `date` the schema lets through must give a sentAt TicketV1 accepts:
  // new Date(date * 1000) beyond ±8.64e15 ms is an Invalid Date (toISOString throws in
  // intake.accept), beyond year 9999 a datetime the ticket schema refuses.
  it('toInbound: any integer `date` gives a sentAt the ticket schema accepts (or a refusal)', () => {
    fc.assert(
      fc.property(fc.oneof(fc.integer({ min: -(2 ** 31), max: 2 ** 31 }), fc.constantFrom(253402300800, 8.64e12 + 1, 2 ** 53 - 1, -(2 ** 53) + 1, 1e15)), (date) => {
        const text = `{"update_id":${nextUpdateId()},"message":{"message_id":1,"date":${date},"chat":{"id":5,"type":"private"},"text":"x"}}`;
        checkUpdate(JSON.parse(text), text);
      }),
      fcParams(),
    );
  });

  // A JSON escape of a lone surrogate is legal JSON ("a\udc00"): it must not reach
  // ticket content ill-formed.
  it('toInbound: content is well-formed even when the JSON escapes a lone surrogate', () => {
    fc.assert(
      fc.property(loneSurrogateText, (t) => {
        const text = `{"update_id":1,"message":{"message_id":1,"date":1,"chat":{"id":5,"type":"private"},"from":{"id":5,"first_name":${t}},"text":${t}}}`;
        checkUpdate(JSON.parse(text), text);
      }),
      fcParams(),
    );
  });

  it('helpers: pickPhoto, normalizePhone, fileMeta, splitText on any input', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ file_id: fc.string(), width: fc.option(fc.integer(), { nil: undefined }), height: fc.option(fc.integer(), { nil: undefined }), file_size: fc.option(fc.integer(), { nil: undefined }) }), { maxLength: 6 }),
        fc.integer(),
        jsonSafeText,
        fc.string({ maxLength: 80 }),
        fc.integer({ min: 2, max: 50 }),
        (sizes, max, text, path, limit) => {
          const p = timed('pickPhoto', () => pickPhoto(sizes, max));
          if (p) expect(sizes).to.include(p);
          expect(timed('normalizePhone', () => normalizePhone(text))).to.be.a('string');
          const meta = timed('fileMeta', () => fileMeta(path));
          expect(meta.fileName).to.be.a('string').and.not.equal('');
          expect(meta.fileName).not.to.contain('/');
          const parts = timed('splitText', () => splitText(text.repeat(3), limit));
          expect(parts.join('').replace(/\n/g, '')).to.equal(text.repeat(3).replace(/\n/g, ''));
          for (const part of parts) {
            expect([...part].length).to.be.at.most(limit);
            expectWellFormed(part, 'splitText part');
          }
        },
      ),
      fcParams(),
    );
  });
});
