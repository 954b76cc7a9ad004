import { expect } from 'chai';
import fc from 'fast-check';
import { z } from 'zod';
import { AppTicketRequest, toInbound } from '../../src/channels/app/parse.js';
import { normalizePhone } from '../../src/normalize/phone.js';
import { fcParams } from './runs.js';
import { expectValidInbound, timed, toWellFormed } from './helpers.js';
import { anyJsonText, holdsLoneSurrogate, jsonSafeText, loneSurrogateText } from './json.js';
import { appBodyText } from './app.gen.js';

/**
 * The app API body (`POST /api/v1/tickets`): any JSON value is either a valid
 * request (and then a valid Inbound) or a ZodError the HTTP layer turns into 400.
 */


function checkBody(value: unknown, raw: Buffer): boolean {
  const r = timed('AppTicketRequest.safeParse', () => AppTicketRequest.safeParse(value));
  if (!r.success) {
    expect(r.error).to.be.instanceOf(z.ZodError);
    return false;
  }
  const inbound = timed('toInbound', () => toInbound(r.data, 'fuzz', raw));
  expectValidInbound(inbound, 'app inbound');
  expect(inbound.channel).to.equal('app');
  expect(inbound.dedupeKey).to.equal(`fuzz:${r.data.clientMessageId}`);
  for (const a of inbound.attachments) expect(a.data).to.be.instanceOf(Buffer);
  return true;
}

function parseOrUndefined(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

describe('fuzz: app API (POST /api/v1/tickets body)', function () {
  this.timeout(600_000);

  it('any JSON value is a valid request (→ valid Inbound) or a ZodError, never another exception', () => {
    fc.assert(
      fc.property(fc.oneof(anyJsonText, fc.anything().map((v) => JSON.stringify(v) ?? 'null')), (text) => {
        checkBody(parseOrUndefined(toWellFormed(text)), Buffer.from(text));
      }),
      fcParams(),
    );
  });

  it('structure-aware bodies (random types, missing fields, long and odd strings, broken JSON) → valid Inbound or ZodError', () => {
    let ok = 0;
    fc.assert(
      fc.property(appBodyText, (text) => {
        // Bodies arrive as UTF-8: a mutation that split a surrogate pair reaches the parser as U+FFFD.
        const value = parseOrUndefined(toWellFormed(text));
        // A mutation can also leave a lone surrogate escape: the known bug of the skipped property below.
        fc.pre(!holdsLoneSurrogate(value));
        if (checkBody(value, Buffer.from(text))) ok++;
      }),
      fcParams(),
    );
    expect(ok).to.be.greaterThan(0);
  });

  it('normalizePhone: any text gives null or an E.164-looking number', () => {
    fc.assert(
      fc.property(fc.oneof(jsonSafeText, fc.stringMatching(/^[+ 0-9()-]{0,25}$/)), (s) => {
        const p = timed('normalizePhone', () => normalizePhone(s));
        if (p !== null) expect(p).to.match(/^\+\d{8,15}$/);
      }),
      fcParams(),
    );
  });

  // Regression, fixed (src/channels/app/parse.ts, same in weibo/telegram): a JSON escape of a lone
  // surrogate passes the schema and reaches ticket content ill-formed. Minimal:
  // {"clientMessageId":"a","content":"x\ud800"} → inbound.content === 'x\ud800'.
  it('content is well-formed even when the JSON escapes a lone surrogate', () => {
    fc.assert(
      fc.property(loneSurrogateText, (t) => {
        const text = `{"clientMessageId":"a","content":${t}}`;
        checkBody(JSON.parse(text), Buffer.from(text));
      }),
      fcParams(),
    );
  });
});
