import fc from 'fast-check';
import iconv from 'iconv-lite';
import { encodeWords } from '../fixtures/mail/build.js';
import { qp } from '../fixtures/mail/build.js';

/** Generators of RFC 5322 / MIME messages in the charsets Chinese mail clients send. */

export const latin1 = (s: string) => Buffer.from(s, 'latin1');

// ---------------------------------------------------------------------------
// Text in each charset

export const SIMPLIFIED = '领导您好我们小区幸福路号从昨晚开始停电已经超过十个小时老人孩子很受影响请尽快处理谢谢噪音扰民垃圾路灯坏了';
export const TRADITIONAL = '市長您好經十路號門口的路燈已經壞了一個星期晚上行人很不安全請派人維修謝謝';
export const ASCII = 'abcXYZ0123 ,.!?;:()-';
export const PUNCT_ZH = '，。！？：；（）';

export function pool(charset: string, chars: string): string[] {
  return [...new Set([...chars])].filter((c) => iconv.decode(iconv.encode(c, charset), charset) === c);
}
export const POOLS: Record<string, string[]> = {
  'utf-8': [...SIMPLIFIED, ...TRADITIONAL, ...ASCII, ...PUNCT_ZH, '😀', '𠮷', 'é', 'ß', 'Ω'],
  gbk: pool('gbk', SIMPLIFIED + ASCII + PUNCT_ZH),
  gb2312: pool('gb2312', SIMPLIFIED + ASCII + PUNCT_ZH),
  gb18030: pool('gb18030', SIMPLIFIED + TRADITIONAL + ASCII + PUNCT_ZH + '😀𠮷'),
  big5: pool('big5', TRADITIONAL + ASCII + PUNCT_ZH),
};
export const CHARSETS = Object.keys(POOLS);

/** Lines of text in a charset's repertoire, no line made only of blanks. */
export const textIn = (charset: string, maxLines = 6) =>
  fc
    .array(
      fc.array(fc.constantFrom(...POOLS[charset]!), { minLength: 1, maxLength: 60 }).map((a) => a.join('')),
      { minLength: 1, maxLength: maxLines },
    )
    .map((lines) => lines.join('\n'));

// ---------------------------------------------------------------------------
// Encodings

export { qp };

export type Transfer = '7bit' | '8bit' | 'base64' | 'quoted-printable' | 'x-bogus';
export function encodeBody(bytes: Buffer, transfer: Transfer): Buffer {
  if (transfer === 'base64') return latin1(bytes.toString('base64').replace(/.{76}/g, '$&\r\n'));
  if (transfer === 'quoted-printable') return latin1(qp(bytes));
  return bytes;
}

export function header(name: string, value: string | Buffer): Buffer {
  return Buffer.concat([latin1(`${name}: `), typeof value === 'string' ? latin1(value) : value, latin1('\r\n')]);
}

export function headerText(text: string, charset: string, how: 'B' | 'Q' | 'raw'): Buffer {
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\x7f]*$/.test(text)) return latin1(text.replace(/\n/g, ' '));
  if (how === 'raw') return iconv.encode(text.replace(/\n/g, ' '), charset);
  return latin1(encodeWords(text.replace(/\n/g, ' '), charset, how));
}

// ---------------------------------------------------------------------------
// Random MIME trees

export interface Leaf {
  type: 'leaf';
  contentType: string;
  charset: string | null;
  transfer: Transfer;
  bytes: Buffer;
  disposition: string | null;
}
export interface Multi {
  type: 'multi';
  subtype: string;
  boundary: string;
  breakage: 'none' | 'no-close' | 'wrong-boundary' | 'no-param' | 'boundary-in-body' | 'lf-only';
  parts: Node[];
}
export type Node = Leaf | Multi;

export const leaf: fc.Arbitrary<Node> = fc
  .record({
    contentType: fc.constantFrom('text/plain', 'text/plain', 'text/html', 'image/jpeg', 'application/octet-stream', 'message/rfc822', 'text/x-unknown', ''),
    charset: fc.oneof(fc.constantFrom(...CHARSETS), fc.constantFrom('iso-8859-1', 'x-unknown-charset', 'utf-7', '"gbk"', 'UTF8'), fc.constant(null)),
    transfer: fc.constantFrom<Transfer>('7bit', '8bit', 'base64', 'quoted-printable', 'x-bogus'),
    text: fc.oneof(fc.constantFrom(...CHARSETS).chain((c) => textIn(c, 3).map((t) => iconv.encode(t, c))), fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)), fc.constant(latin1('<p>Hello <b>world</b>&amp;</p>'))),
    disposition: fc.option(fc.constantFrom('attachment; filename="a.txt"', 'inline', 'attachment; filename*=UTF-8\'\'%E7%85%A7%E7%89%87.jpg', 'attachment; filename="=?gbk?B?1dXGrA==?="', 'attachment'), { nil: null }),
  })
  .map(({ contentType, charset, transfer, text, disposition }) => ({ type: 'leaf' as const, contentType, charset, transfer, bytes: text, disposition }));

export const tree: fc.Arbitrary<Node> = fc.letrec<{ node: Node }>((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leaf,
    fc
      .record({
        subtype: fc.constantFrom('mixed', 'alternative', 'related', 'report', 'digest'),
        boundary: fc.oneof(fc.constantFrom('b1', '----=_Part_0_1', 'x y', '==', ''), fc.stringMatching(/^[A-Za-z0-9'()+_,./:=?-]{1,70}$/)),
        breakage: fc.oneof(
          { weight: 6, arbitrary: fc.constant('none' as const) },
          { weight: 1, arbitrary: fc.constantFrom('no-close' as const, 'wrong-boundary' as const, 'no-param' as const, 'boundary-in-body' as const, 'lf-only' as const) },
        ),
        parts: fc.array(tie('node'), { maxLength: 3 }),
      })
      .map((m) => ({ type: 'multi' as const, ...m })),
  ),
})).node;

export function renderNode(n: Node): { head: Buffer; body: Buffer } {
  if (n.type === 'leaf') {
    const ct = n.contentType ? `${n.contentType}${n.charset ? `; charset=${n.charset}` : ''}` : '';
    const head = Buffer.concat([ct ? header('Content-Type', ct) : Buffer.alloc(0), header('Content-Transfer-Encoding', n.transfer), n.disposition ? header('Content-Disposition', n.disposition) : Buffer.alloc(0)]);
    return { head, body: encodeBody(n.bytes, n.transfer) };
  }
  const eol = n.breakage === 'lf-only' ? '\n' : '\r\n';
  const param = n.breakage === 'no-param' ? '' : `; boundary="${n.boundary}"`;
  const used = n.breakage === 'wrong-boundary' ? `${n.boundary}X` : n.boundary;
  const chunks: Buffer[] = [latin1(`preamble${eol}`)];
  for (const p of n.parts) {
    const r = renderNode(p);
    chunks.push(latin1(`--${used}${eol}`), r.head, latin1(eol), r.body, latin1(eol));
    if (n.breakage === 'boundary-in-body') chunks.push(latin1(`--${used}${eol}`));
  }
  if (n.breakage !== 'no-close') chunks.push(latin1(`--${used}--${eol}epilogue`));
  return { head: header('Content-Type', `multipart/${n.subtype}${param}`), body: Buffer.concat(chunks) };
}

export const fromHeader = fc.oneof(
  { weight: 5, arbitrary: fc.tuple(fc.constantFrom(...CHARSETS), fc.emailAddress()).chain(([c, addr]) => textIn(c, 1).map((name) => ({ c, name, addr }))).map(({ c, name, addr }) => Buffer.concat([headerText(name.slice(0, 20), c, 'B'), latin1(` <${addr}>`)])) },
  { weight: 1, arbitrary: fc.constantFrom('', 'nobody', '<>', 'a@', '"x" <@example.com>', 'undisclosed-recipients:;', 'MAILER-DAEMON@mx.example.com', 'mayor@city.example.gov.cn', 'Group: a@b.cn, c@d.cn;').map(latin1) },
  { weight: 1, arbitrary: fc.string({ maxLength: 60 }).map((s) => Buffer.from(s.replace(/[\r\n]/g, ''), 'utf8')) },
);

export const extraHeaders = fc.array(
  fc.oneof(
    fc.constantFrom<[string, string]>(
      ['Auto-Submitted', 'auto-replied'],
      ['Auto-Submitted', 'no'],
      ['Precedence', 'bulk'],
      ['Return-Path', '<>'],
      ['X-Failed-Recipients', 'a@b.cn'],
      ['X-Autoreply', 'yes'],
      ['In-Reply-To', '<abc@x>'],
      ['References', '<a@x> <b@y>\r\n <c@z>'],
      ['Message-ID', '<dup@x>'],
      ['Message-ID', ''],
      ['Date', 'Mon, 23 Nov 2026 08:30:00 +0800'],
      ['Date', 'garbage'],
      ['Date', 'Mon, 23 Nov 1969 08:30:00 +0800'],
      ['Reply-To', 'other@example.cn'],
      ['Content-Type', 'multipart/report; report-type=delivery-status'],
      ['MIME-Version', '2.0'],
    ),
    fc.tuple(fc.stringMatching(/^[A-Za-z-]{1,20}$/), fc.string({ maxLength: 80 }).map((s) => s.replace(/[\r\n]/g, ' '))),
  ),
  { maxLength: 5 },
);

let mid = 0;
/** A fresh Message-ID, so each generated mail is a new message. */
export const nextMessageId = () => `<fuzz-${process.pid}-${++mid}@citizen.example.cn>`;
export const mail = fc
  .record({
    from: fromHeader,
    subjectCharset: fc.constantFrom(...CHARSETS),
    subjectHow: fc.constantFrom<'B' | 'Q' | 'raw'>('B', 'Q', 'raw'),
    subject: fc.option(fc.string({ maxLength: 40 }), { nil: undefined }),
    extra: extraHeaders,
    body: tree,
    lfOnly: fc.boolean(),
    cut: fc.oneof({ weight: 8, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.nat(200) }),
  })
  .chain((r) => textIn(r.subjectCharset, 1).map((zh) => ({ ...r, subjectText: r.subject ?? zh.slice(0, 30) })))
  .map((r) => {
    const root = renderNode(r.body);
    const parts = [
      header('From', r.from),
      header('To', 'mayor@city.example.gov.cn'),
      header('Subject', headerText(r.subjectText, r.subjectCharset, r.subjectHow)),
      header('Message-ID', nextMessageId()),
      header('MIME-Version', '1.0'),
      ...r.extra.map(([k, v]) => header(k, v)),
      root.head,
      latin1('\r\n'),
      root.body,
    ];
    let raw = Buffer.concat(parts);
    if (r.lfOnly) raw = Buffer.from(raw.toString('latin1').replace(/\r\n/g, '\n'), 'latin1');
    if (r.cut > 0) raw = raw.subarray(0, Math.max(0, raw.length - r.cut));
    return raw;
  });
