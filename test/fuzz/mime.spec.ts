import { isUtf8 } from 'node:buffer';
import { expect } from 'chai';
import fc from 'fast-check';
import iconv from 'iconv-lite';
import {
  detectAutomated,
  FormInput,
  formToInbound,
  normalizeMessageId,
  parseMail,
  rawHeaders,
  stripQuoted,
  ticketNumbersIn,
  type MailParseResult,
} from '../../src/channels/mailbox/parse.js';
import { encodeWords } from '../fixtures/mail/build.js';
import { CHARSETS, encodeBody, header, headerText, latin1, mail, nextMessageId, textIn, type Transfer } from './mime.gen.js';
import { fcParams, RUNS } from './runs.js';
import { expectNoReplacement, expectValidInbound, expectWellFormed, timed, timedAsync } from './helpers.js';

/**
 * Mayor's mailbox: RFC 5322 / MIME messages built from random headers, charsets
 * (GBK, GB18030, Big5, UTF-8, via iconv-lite), transfer encodings, nested
 * multiparts and broken boundaries, plus arbitrary bytes.
 */

const ORIGIN = { mailbox: 'INBOX', uidValidity: '1', uid: 1 };
const OPTS = { maxBytes: 1_000_000, ownAddress: 'mayor@city.example.gov.cn' };
const REASONS = ['auto_reply', 'bounce', 'too_large', 'parse_error'];

// ---------------------------------------------------------------------------

async function checkMail(raw: Buffer): Promise<MailParseResult> {
  const r = await timedAsync('parseMail', () => parseMail(raw, ORIGIN, OPTS));
  expect(['inbound', 'reject']).to.include(r.kind);
  if (r.kind === 'reject') {
    expect(REASONS).to.include(r.reason);
    expect(r.detail).to.be.a('string');
    return r;
  }
  expectValidInbound(r.inbound, 'mail inbound');
  expect(r.inbound.channel).to.equal('mailbox');
  for (const a of r.inbound.attachments) {
    expectWellFormed(a.fileName, 'attachment file name');
    expectWellFormed(a.mimeType, 'attachment type');
  }
  for (const ref of r.inbound.threadRefs ?? []) expectWellFormed(ref, 'thread ref');
  return r;
}

const squash = (s: string) => s.replace(/\s+/g, ' ').trim();

describe('fuzz: mailbox (RFC 5322 / MIME)', function () {
  this.timeout(600_000);

  it('parseMail: arbitrary bytes give an Inbound or a typed reject, never an exception or a hang', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 600 }).map((a) => Buffer.from(a)),
          fc.string({ maxLength: 400 }).map((s) => Buffer.from(s, 'utf8')),
          fc.string({ maxLength: 300 }).map((s) => Buffer.from(`From: a@b.cn\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n${s}`, 'utf8')),
        ),
        async (raw) => {
          await checkMail(raw);
        },
      ),
      fcParams(),
    );
  });

  it('parseMail: structure-aware messages (random headers, charsets, transfer encodings, nested multiparts, broken boundaries, truncation)', async () => {
    let inbound = 0;
    await fc.assert(
      fc.asyncProperty(mail, async (raw) => {
        // Known hang, isolated in its own skipped property below: keep the rest running.
        const text = raw.toString('latin1');
        fc.pre(!(/message\/rfc822/i.test(text) && /inline/i.test(text)));
        if ((await checkMail(raw)).kind === 'inbound') inbound++;
      }),
      fcParams(),
    );
    expect(inbound).to.be.greaterThan(0);
  });

  it('labelled text in GBK / GB2312 / GB18030 / Big5 / UTF-8 (8bit, base64, quoted-printable) comes out exactly, without U+FFFD', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...CHARSETS).chain((c) => fc.record({ c: fc.constant(c), body: textIn(c), subject: textIn(c, 1), name: textIn(c, 1), how: fc.constantFrom<'B' | 'Q'>('B', 'Q') })),
        fc.constantFrom<Transfer>('8bit', 'base64', 'quoted-printable'),
        fc.boolean(),
        async ({ c, body, subject, name, how }, transfer, html) => {
          const subj = subject.slice(0, 40).trim();
          fc.pre(subj !== '' && !/^\s*(re|aw|sv|fw|fwd)\s*:/i.test(subj));
          const bytes = iconv.encode(html ? `<html><body><p>${body.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/\n/g, '<br>')}</p></body></html>` : body.replace(/\n/g, '\r\n'), c);
          const raw = Buffer.concat([
            // Always a B-encoded word in the phrase: bare '(' or Q-encoded specials would be malformed (RFC 2047 §5).
            header('From', Buffer.concat([latin1(encodeWords(name.slice(0, 20).replace(/\n/g, ' '), c, 'B')), latin1(' <citizen@example.cn>')])),
            header('To', 'mayor@city.example.gov.cn'),
            header('Subject', headerText(subj, c, how)),
            header('Message-ID', nextMessageId()),
            header('MIME-Version', '1.0'),
            header('Content-Type', `${html ? 'text/html' : 'text/plain'}; charset=${c}`),
            header('Content-Transfer-Encoding', transfer),
            latin1('\r\n'),
            encodeBody(bytes, transfer),
          ]);
          const r = await checkMail(raw);
          if (r.kind !== 'inbound') throw new Error(`rejected: ${r.reason} ${r.detail}`);
          expectNoReplacement(r.inbound.content, 'content');
          expectNoReplacement(r.inbound.subject ?? '', 'subject');
          expect(squash(r.inbound.content)).to.equal(squash(body));
          expect(squash(r.inbound.subject ?? '')).to.equal(squash(subj));
        },
      ),
      fcParams(),
    );
  });

  it('unlabelled 8-bit GBK text (no charset, raw GBK subject) is repaired, without U+FFFD', async () => {
    await fc.assert(
      fc.asyncProperty(textIn('gbk'), textIn('gbk', 1), async (body, subject) => {
        const bytes = iconv.encode(body.replace(/\n/g, '\r\n'), 'gbk');
        const subj = subject.slice(0, 30).trim();
        fc.pre(!isUtf8(bytes) && subj !== '' && !/^\s*(re|aw|sv|fw|fwd)\s*:/i.test(subj));
        const raw = Buffer.concat([
          header('From', 'citizen@example.cn'),
          header('Subject', iconv.encode(subj, 'gbk')),
          header('Message-ID', nextMessageId()),
          header('Content-Type', 'text/plain'),
          header('Content-Transfer-Encoding', '8bit'),
          latin1('\r\n'),
          bytes,
        ]);
        const r = await checkMail(raw);
        if (r.kind !== 'inbound') throw new Error(`rejected: ${r.reason} ${r.detail}`);
        expectNoReplacement(r.inbound.content, 'content');
        expect(squash(r.inbound.content)).to.equal(squash(body));
        if (isUtf8(iconv.encode(subj, 'gbk'))) return;
        expectNoReplacement(r.inbound.subject ?? '', 'subject');
        expect(r.inbound.subject).to.equal(subj);
      }),
      fcParams(),
    );
  });

  // mailparser 3.14 never settles on some inline message/rfc822 parts (empty, truncated,
  // header-only); parseMail bounds it and rejects the mail as parse_error.
  it('parseMail settles on inline message/rfc822 parts (empty, truncated, header-only)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('', '\r\n', '\r\n\r\n--b1--\r\n', '\r\nX-A: b', '\r\n\r\n\xe9\xa2\x86\r\n--b1\r\n--b1--\r\n'), async (tail) => {
        const raw = latin1(`From: a@b.cn\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: message/rfc822\r\nContent-Disposition: inline${tail}`);
        const r = await parseMail(raw, ORIGIN, { ...OPTS, parseTimeoutMs: 300 });
        expect(['inbound', 'reject']).to.include(r.kind);
      }),
      fcParams(5),
    );
  });

  // Regression, fixed (src/channels/mailbox/parse.ts factsOf): any Date the parser can read becomes
  // sentAt, so 'Date: Mon, 23 Nov 99999 08:30:00 +0800' gives +099999-11-23T00:30:00.000Z,
  // which TicketV1 refuses: intake.accept throws a ZodError (taken as transient), so the
  // mail is retried and never becomes a ticket or a rejected record. Minimal:
  // 'From: a@b.cn\r\nDate: Mon, 23 Nov 99999 08:30:00 +0800\r\n\r\nhello'.
  it('Date headers far in the future or past give a sentAt the ticket schema accepts (or null)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 10000, max: 275000 }), async (year) => {
        await checkMail(latin1(`From: a@b.cn\r\nMessage-ID: <y${year}@x>\r\nDate: Mon, 23 Nov ${year} 08:30:00 +0800\r\n\r\nhello`));
      }),
      fcParams(Math.max(20, Math.floor(RUNS / 20))),
    );
  });

  it('header and text helpers (auto-reply detection, quote stripping, ticket numbers, Message-IDs) on any input', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string({ maxLength: 2000 }), fc.string({ unit: 'binary', maxLength: 500 }), fc.array(fc.constantFrom('On Mon, 23 Nov 2026 wrote:', '> quoted', '-----原始邮件-----', '发件人: a', '在 2026年11月23日 写道：', 'x'.repeat(400), '20261123-000042', '\n', '-- \n'), { maxLength: 30 }).map((a) => a.join('\n'))),
        (s) => {
          const raw = Buffer.from(s, 'utf8');
          timed('rawHeaders', () => rawHeaders(raw));
          const a = timed('detectAutomated', () => detectAutomated(raw));
          if (a) expect(['auto_reply', 'bounce']).to.include(a.reason);
          const q = timed('stripQuoted', () => stripQuoted(s));
          expect(q).to.be.a('string');
          for (const n of timed('ticketNumbersIn', () => ticketNumbersIn(s))) expect(n).to.match(/^\d{8}-\d{6,}$/);
          expect(timed('normalizeMessageId', () => normalizeMessageId(s))).to.match(/^<[\s\S]*>$/);
        },
      ),
      fcParams(),
    );
  });

  it('web form input: any field values give a valid Inbound or a ZodError', () => {
    fc.assert(
      fc.property(
        fc.record(
          {
            name: fc.string({ maxLength: 60 }),
            phone: fc.oneof(fc.string({ maxLength: 25 }), fc.constantFrom('13800138000', '+86 138 0013 8000', '(010) 1234-5678')),
            email: fc.oneof(fc.string({ maxLength: 40 }), fc.emailAddress()),
            subject: fc.string({ unit: 'binary', maxLength: 220 }),
            content: fc.string({ unit: 'binary', maxLength: 300 }),
            nonce: fc.oneof(fc.stringMatching(/^[A-Za-z0-9_-]{16,64}$/), fc.string({ maxLength: 70 })),
            x: fc.anything(),
          },
          { requiredKeys: [] },
        ),
        (input) => {
          const r = timed('FormInput.safeParse', () => FormInput.safeParse(input));
          if (!r.success) return;
          const inbound = timed('formToInbound', () => formToInbound(r.data, [], new Date()));
          expectValidInbound(inbound, 'form inbound');
        },
      ),
      fcParams(),
    );
  });

  it('oversized mail is a too_large reject without parsing', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 2000 }), async (n) => {
        const r = await parseMail(Buffer.alloc(n + 10, 0x61), ORIGIN, { maxBytes: n });
        expect(r.kind === 'reject' && r.reason).to.equal('too_large');
      }),
      fcParams(Math.max(10, Math.floor(RUNS / 20))),
    );
  });
});
