import { createHash } from 'node:crypto';
import { isUtf8 } from 'node:buffer';
import { simpleParser, type ParsedMail, type AddressObject } from 'mailparser';
import { Splitter } from '@zone-eu/mailsplit';
import libmime from 'libmime';
import iconv from 'iconv-lite';
import { z } from 'zod';
import type { Inbound, InboundAttachment } from '../types.js';
import { htmlToText } from '../../normalize/text.js';
import { CHANNEL, Email } from './form-input.js';

/**
 * Pure parsing for the mayor's mailbox: raw RFC 5322 bytes (or a web form) →
 * validated facts → `Inbound`. No sockets, no store, no clock.
 */

export { CHANNEL };

/** Where an IMAP message came from; null for mail not read from IMAP. */
export interface MailOrigin {
  mailbox: string;
  uidValidity: string | null;
  uid: number | null;
}

export type RejectReason = 'auto_reply' | 'bounce' | 'too_large' | 'parse_error';

export type MailParseResult =
  | {
      kind: 'inbound';
      inbound: Inbound;
      /** The charsets unlabelled 8-bit text was read with (comma-separated), or null. */
      repairedCharset: string | null;
      /** What was rewritten before parsing (see `prepareMime`); empty when nothing. */
      rewritten: string[];
    }
  | { kind: 'reject'; reason: RejectReason; detail: string };

// ---------------------------------------------------------------------------
// Raw header access. mailparser decodes headers for us, but auto-reply
// detection and the charset fallback need the header bytes as they were sent.

/** The root header block (before the first empty line), CRLF or LF. */
export function headerBlock(raw: Buffer): Buffer {
  const crlf = raw.indexOf('\r\n\r\n');
  const lf = raw.indexOf('\n\n');
  const end = crlf >= 0 && (lf < 0 || crlf < lf) ? crlf + 2 : lf >= 0 ? lf + 1 : raw.length;
  return raw.subarray(0, end);
}

/** Unfolded header fields of the root block, names lowercased, values as latin1 strings (byte-preserving). */
export function rawHeaders(raw: Buffer): { key: string; value: string }[] {
  const text = headerBlock(raw).toString('latin1').replace(/\r?\n[ \t]+/g, ' ');
  const out: { key: string; value: string }[] = [];
  for (const line of text.split(/\r?\n/)) {
    const i = line.indexOf(':');
    if (i <= 0) continue;
    out.push({ key: line.slice(0, i).trim().toLowerCase(), value: line.slice(i + 1).trim() });
  }
  return out;
}

function firstHeader(headers: { key: string; value: string }[], key: string): string | null {
  const h = headers.find((x) => x.key === key);
  return h ? h.value : null;
}

// ---------------------------------------------------------------------------
// Loops and junk (RFC 3834, RFC 3464): never a ticket, never a receipt.

export interface Automated {
  reason: 'auto_reply' | 'bounce';
  detail: string;
}

export function detectAutomated(raw: Buffer): Automated | null {
  const headers = rawHeaders(raw);
  const get = (k: string) => firstHeader(headers, k);

  // Bounces first: a DSN is often also marked Auto-Submitted.
  const returnPath = get('return-path');
  if (returnPath !== null && /^<\s*>$/.test(returnPath.trim())) {
    return { reason: 'bounce', detail: 'null sender (Return-Path: <>)' };
  }
  const contentType = get('content-type');
  if (contentType) {
    const ct = libmime.parseHeaderValue(contentType);
    if (ct.value.toLowerCase() === 'multipart/report') {
      const type = String(ct.params['report-type'] ?? '').toLowerCase();
      if (type === 'delivery-status' || type === '') {
        return { reason: 'bounce', detail: `multipart/report; report-type=${type || 'unspecified'}` };
      }
      // disposition-notification (read receipts) and the like: automatic, not a bounce.
      return { reason: 'auto_reply', detail: `multipart/report; report-type=${type}` };
    }
  }
  if (get('x-failed-recipients') !== null) return { reason: 'bounce', detail: 'X-Failed-Recipients present' };
  const from = get('from');
  if (from && /(^|[<\s"])mailer-daemon@/i.test(from)) return { reason: 'bounce', detail: `From: ${from}` };

  const autoSubmitted = get('auto-submitted');
  if (autoSubmitted !== null) {
    const value = autoSubmitted.split(';')[0]!.replace(/\(.*?\)/g, '').trim().toLowerCase();
    if (value !== 'no') return { reason: 'auto_reply', detail: `Auto-Submitted: ${autoSubmitted}` };
  }
  const precedence = get('precedence');
  if (precedence && /^(bulk|junk|list|auto_reply)$/i.test(precedence.trim())) {
    return { reason: 'auto_reply', detail: `Precedence: ${precedence}` };
  }
  for (const key of ['x-autoreply', 'x-autorespond', 'x-auto-reply']) {
    const v = get(key);
    if (v !== null && !/^(no|false|0)$/i.test(v.trim())) return { reason: 'auto_reply', detail: `${key}: ${v}` };
  }
  return null;
}

// ---------------------------------------------------------------------------
// Charsets. mailparser decodes labelled GBK/GB18030/Big5 correctly, but reads
// an unlabelled 8-bit body and raw 8-bit header bytes as UTF-8, which leaves
// U+FFFD. When that happens we rewrite the message: header lines that are not
// UTF-8 are transcoded from the fallback charset, unlabelled text parts whose
// bytes are not UTF-8 get `charset=<fallback>`; then parse again.

const REPLACEMENT = /\uFFFD/g;
export function replacementCount(s: string | null | undefined): number {
  return s ? (s.match(REPLACEMENT) ?? []).length : 0;
}

const CJK_CHARSETS = new Set(['gbk', 'gb2312', 'gb18030', 'big5', 'big5-hkscs', 'cp936', 'x-gbk', 'hz-gb-2312', 'cp950']);

/**
 * Transcode every line that is not valid UTF-8 from the first candidate charset
 * that reads it (adding that charset to `used`); other lines stay as they are.
 */
function transcodeHeaderLines(block: Buffer, candidates: string[], used: Set<string>): Buffer {
  if (isUtf8(block)) return block;
  const parts: Buffer[] = [];
  let start = 0;
  while (start < block.length) {
    let end = block.indexOf(0x0a, start);
    end = end < 0 ? block.length : end + 1;
    const line = block.subarray(start, end);
    if (isUtf8(line)) {
      parts.push(line);
    } else {
      const charset = firstFitting(line, candidates);
      used.add(charset);
      parts.push(Buffer.from(iconv.decode(line, charset), 'utf8'));
    }
    start = end;
  }
  return Buffer.concat(parts);
}

interface SplitNode {
  type: 'node';
  root: boolean;
  parentNode: SplitNode | false;
  contentType: string | false;
  charset: string | false;
  multipart: string | false;
  disposition: string | false;
  /** From Content-Disposition `filename` or Content-Type `name`, RFC 2231 continuations joined. */
  filename: string | false;
  headers: { getFirst(key: string): string; update(key: string, value: string | Buffer): void };
  getHeaders(): Buffer;
  setCharset(charset: string): void;
  getDecoder(): NodeJS.ReadWriteStream;
}
type SplitChunk = SplitNode | { type: 'data' | 'body'; value: Buffer };

async function splitMime(raw: Buffer): Promise<SplitChunk[]> {
  const items: SplitChunk[] = [];
  const splitter = new Splitter({ ignoreEmbedded: true });
  splitter.end(raw);
  for await (const c of splitter as unknown as AsyncIterable<SplitChunk>) items.push(c);
  return items;
}

/** The body chunks that follow the node at `i`. */
function bodyAfter(items: SplitChunk[], i: number): Buffer[] {
  const body: Buffer[] = [];
  for (let j = i + 1; j < items.length && items[j]!.type === 'body'; j++) body.push((items[j] as { value: Buffer }).value);
  return body;
}

async function decodeBody(node: SplitNode, chunks: Buffer[]): Promise<Buffer> {
  const decoder = node.getDecoder();
  const out: Buffer[] = [];
  return new Promise((resolve, reject) => {
    decoder.on('data', (c: Buffer | string) => out.push(typeof c === 'string' ? Buffer.from(c, 'binary') : c));
    decoder.on('end', () => resolve(Buffer.concat(out)));
    decoder.on('error', reject);
    for (const c of chunks) decoder.write(c);
    decoder.end();
  });
}

/**
 * Rewrite a message so that mailparser decodes its unlabelled 8-bit text: returns
 * the rewritten bytes and the charset used, or null when nothing needed it.
 */
export async function repairCharsets(raw: Buffer): Promise<{ raw: Buffer; charset: string } | null> {
  const items = await splitMime(raw);
  const candidates = fallbackCharsets(items);
  const used = new Set<string>();

  let changed = false;
  const out: Buffer[] = [];
  for (let i = 0; i < items.length; i++) {
    const it = items[i]!;
    if (it.type !== 'node') {
      out.push(it.value);
      continue;
    }
    const body = bodyAfter(items, i);
    const isText = !it.multipart && (!it.contentType || it.contentType.startsWith('text/'));
    if (isText && !it.charset && body.length > 0) {
      const decoded = await decodeBody(it, body);
      if (!isUtf8(decoded)) {
        const charset = firstFitting(decoded, candidates);
        it.setCharset(charset);
        used.add(charset);
        changed = true;
      }
    }
    const head = it.getHeaders();
    const fixed = transcodeHeaderLines(head, candidates, used);
    if (fixed !== head) changed = true;
    out.push(fixed);
  }
  return changed ? { raw: Buffer.concat(out), charset: [...used].join(',') } : null;
}

/** Charsets UTF-8 decoding stands for: nothing to try for bytes that are not UTF-8. */
const UTF8_LIKE = new Set(['utf-8', 'utf8', 'us-ascii', 'ascii', '7bit', '8bit']);
/** MIME encoded words in a header block read as latin1: `=?charset?Q|B?text?=`. */
const ENCODED_WORD = /=\?([^?\s*]+)(?:\*[^?\s]*)?\?([QqBb])\?([^?\s]*)\?=/g;

/** The name iconv-lite knows a declared charset by, or null when it is no use as a fallback. */
function usableCharset(declared: string): string | null {
  const name = libmime.normalizeCharset(declared).toLowerCase();
  if (UTF8_LIKE.has(name) || isUtf7(name) || !iconv.encodingExists(name)) return null;
  if (name.startsWith('big5') || name === 'cp950') return 'big5';
  // GB18030 reads every GB2312 and GBK byte sequence as they do, and more.
  if (CJK_CHARSETS.has(name)) return 'gb18030';
  return name;
}

/**
 * The charsets to read unlabelled 8-bit text with, most likely first: those the
 * mail declares itself (part charsets in order, then encoded-word charsets), then
 * GB18030. A mail body labelled ISO-8859-1 next to a raw 8-bit subject means the
 * subject is ISO-8859-1 too: read as GB18030, "Frösche" came out as "Fr鰏che",
 * since an ISO-8859-1 byte followed by an ASCII letter is also a valid GBK pair.
 * Mail that declares nothing keeps GB18030, the superset of GB2312 and GBK, as
 * unlabelled mail from Chinese citizens is GBK.
 */
function fallbackCharsets(items: SplitChunk[]): string[] {
  const declared: string[] = [];
  const words: string[] = [];
  for (const it of items) {
    if (it.type !== 'node') continue;
    if (it.charset) declared.push(it.charset);
    for (const m of it.getHeaders().toString('latin1').matchAll(ENCODED_WORD)) words.push(m[1]!);
  }
  const out: string[] = [];
  for (const name of [...declared, ...words]) {
    const usable = usableCharset(name);
    if (usable && !out.includes(usable)) out.push(usable);
  }
  if (!out.includes('gb18030')) out.push('gb18030');
  return out;
}

/**
 * The first candidate that reads `bytes` without a replacement character. Single-
 * byte charsets read anything, so a declared one wins; a multibyte one (Big5, GBK)
 * is passed over where the bytes are not valid in it.
 */
function firstFitting(bytes: Buffer, candidates: string[]): string {
  for (const charset of candidates) if (!iconv.decode(bytes, charset).includes('\uFFFD')) return charset;
  return candidates[candidates.length - 1]!;
}

// ---------------------------------------------------------------------------
// Rewrites before parsing. Each fixes a way real mail defeats mailparser that
// its options cannot change; the archive keeps the mail as received.

/** UTF-7 by any name iconv-lite and mailparser know it by (utf-7, unicode-1-1-utf-7, csUnicode11UTF7). */
function isUtf7(charset: string): boolean {
  return /^(?:(?:cs)?unicode11)?utf7$/.test(charset.toLowerCase().replace(/[^a-z0-9]/g, ''));
}

/** Any sign in the raw mail that `prepareMime` may have something to do (cheap, may say yes for nothing). */
const PREPARE_HINT = /utf-?7|=\?[^?\s]+\?[Qq]\?[^?\x00-\x20]*[\x80-\xff]|name\*?(?:\d+\*?)?\s*=/i;

/**
 * RFC 2047 Q words may not hold 8-bit bytes, yet some mailers copy them in raw
 * (`=?ISO-8859-1?Q?Fr\xF6sche?=`). mailparser reads header bytes as UTF-8 before
 * decoding words, so the byte became U+FFFD and then, re-encoded as UTF-8 and read
 * as Latin-1, `ï¿½`. Escaped as `=F6` it is decoded in the word's own charset.
 */
function escapeRawBytesInQWords(header: string): string {
  // Not \s for the text: a raw 0xA0 (no-break space in Latin-1) is one of the bytes to escape.
  return header.replace(/(=\?[^?\s]+\?[Qq]\?)([^?\x00-\x20]*[\x80-\xff][^?\x00-\x20]*)(\?=)/g, (_m, head: string, text: string, tail: string) => {
    const escaped = text.replace(/[\x80-\xff]/g, (c) => `=${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
    return head + escaped + tail;
  });
}

/**
 * UTF-7 encoded words (Outlook 2000 wrote `=?unicode-1-1-utf-7?Q?…?=`) as UTF-8 B
 * words. libmime refuses UTF-7 and reads it as UTF-8, leaving `+AOQ-` sequences in
 * the subject, because UTF-7 can smuggle markup past filters that look for `<`.
 * Here header values become ticket fields, plain text whatever characters they
 * hold, so decoding them hides nothing. Adjacent UTF-7 words are joined before
 * decoding, as a shifted sequence may run on from one into the next. libmime
 * takes the Q/B payload apart (UTF-7 is 7-bit, so reading it as UTF-8 keeps it
 * byte for byte) and builds the new word; iconv-lite decodes the UTF-7.
 */
function convertUtf7Words(header: string): string {
  // Only UTF-7 words, so a run never takes in a word in another charset.
  const word = String.raw`=\?(?:cs)?(?:unicode-?1-?1-?)?utf-?7(?:\*[^?\s]*)?\?([QqBb])\?([^?\s]*)\?=`;
  const run = new RegExp(`${word}(?:[ \\t]*(?:\\r?\\n)?[ \\t]*${word})*`, 'gi');
  return header.replace(run, (seq: string) => {
    const words = [...seq.matchAll(new RegExp(word, 'gi'))];
    const utf7 = words.map((w) => libmime.decodeWord('utf-8', w[1]!, w[2]!)).join('');
    return libmime.encodeWord(iconv.decode(Buffer.from(utf7, 'latin1'), 'utf7'), 'B');
  });
}

/** The body of a text part labelled UTF-7, transcoded to UTF-8 and base64-encoded. */
async function utf7BodyAsUtf8(node: SplitNode, body: Buffer[]): Promise<Buffer> {
  const decoded = await decodeBody(node, body);
  // A text part is plain text or HTML the gateway turns into plain text, so UTF-7
  // (which mailparser refuses for the markup it can hide) is safe to decode here.
  const text = iconv.decode(decoded, 'utf7');
  node.setCharset('utf-8');
  node.headers.update('Content-Transfer-Encoding', 'base64');
  return Buffer.from(`${Buffer.from(text, 'utf8').toString('base64').replace(/.{76}/g, '$&\r\n')}\r\n`, 'latin1');
}

/**
 * A plain-text or HTML part that names a file is one the citizen attached, even
 * when marked inline (clients show attached .txt files in place), but mailparser
 * merges every inline text part into the body, with or without a file name. Not
 * for the alternatives of the body itself, nor for the whole message.
 */
function isNamedTextFile(node: SplitNode): boolean {
  if (node.root || node.multipart || !node.filename) return false;
  if (node.contentType !== 'text/plain' && node.contentType !== 'text/html') return false;
  if (node.disposition && node.disposition !== 'inline') return false;
  return !(node.parentNode && node.parentNode.multipart === 'alternative');
}

/** Mark the part an attachment, keeping its Content-Disposition parameters byte for byte. */
function markAttachment(node: SplitNode): void {
  // getFirst gives the unfolded value as a latin1 string: raw 8-bit bytes stay bytes.
  const current = node.headers.getFirst('Content-Disposition');
  const value = current ? current.replace(/^\s*inline\b/i, 'attachment') : 'attachment';
  node.headers.update('Content-Disposition', Buffer.from(value.startsWith('attachment') ? value : `attachment; ${value}`, 'latin1'));
}

/**
 * Rewrite what mailparser would misread: UTF-7 encoded words and text parts,
 * raw 8-bit bytes inside Q encoded words, and named inline text parts (kept as
 * attachments). Returns the rewritten mail and what changed, or null.
 */
export async function prepareMime(raw: Buffer): Promise<{ raw: Buffer; rewritten: string[] } | null> {
  if (!PREPARE_HINT.test(raw.toString('latin1'))) return null;
  const items = await splitMime(raw);
  const rewritten = new Set<string>();
  const out: Buffer[] = [];
  let skipBody = false;
  for (let i = 0; i < items.length; i++) {
    const it = items[i]!;
    if (it.type !== 'node') {
      // Body chunks of a rewritten part were emitted with its headers.
      if (it.type === 'body' && skipBody) continue;
      out.push(it.value);
      continue;
    }
    skipBody = false;
    const body = bodyAfter(items, i);
    let newBody: Buffer | null = null;
    if (!it.multipart && it.contentType && it.contentType.startsWith('text/') && it.charset && isUtf7(it.charset) && body.length > 0) {
      newBody = await utf7BodyAsUtf8(it, body);
      rewritten.add('UTF-7 text part');
    }
    if (isNamedTextFile(it)) {
      markAttachment(it);
      rewritten.add(`named inline text part kept as an attachment`);
    }
    const head = it.getHeaders().toString('latin1');
    let fixed = escapeRawBytesInQWords(head);
    if (fixed !== head) rewritten.add('8-bit bytes in Q encoded words');
    const words = convertUtf7Words(fixed);
    if (words !== fixed) rewritten.add('UTF-7 encoded words');
    fixed = words;
    out.push(Buffer.from(fixed, 'latin1'));
    if (newBody) {
      out.push(newBody);
      skipBody = true;
    }
  }
  return rewritten.size > 0 ? { raw: Buffer.concat(out), rewritten: [...rewritten] } : null;
}

// ---------------------------------------------------------------------------
// Text

/** Ticket numbers look like 20261123-000042; they may appear anywhere in a subject. */
const TICKET_NUMBER = /(?<!\d)(\d{8}-\d{6,})(?!\d)/g;
export function ticketNumbersIn(text: string | null | undefined): string[] {
  if (!text) return [];
  return [...new Set([...text.matchAll(TICKET_NUMBER)].map((m) => m[1]!))];
}

const REPLY_SUBJECT = /^\s*(re|aw|sv|fw|fwd|回复|答复|回覆|回覆|转发|轉寄)\s*[:：]/i;

/** Lines that introduce the quoted earlier message in common clients (English and Chinese). */
const QUOTE_HEADERS: RegExp[] = [
  /^-{2,}\s*(original message|原始邮件|原始郵件|forwarded message|转发邮件|转发的邮件|轉寄郵件)\s*-{2,}\s*$/i,
  /^on\s.{1,300}\swrote:\s*$/i,
  /^在\s?.{1,300}(写道|寫道)\s*[:：]\s*$/,
  /^.{1,300}于\s?.{1,100}(写道|寫道)\s*[:：]\s*$/,
  /^_{20,}\s*$/,
];
const OUTLOOK_FROM = /^\s*\**(from|发件人|寄件者)\s*\**\s*[:：]/i;
const OUTLOOK_NEXT = /^\s*\**(sent|date|to|subject|发送时间|日期|收件人|主题|寄件日期|主旨)\s*\**\s*[:：]/i;

/**
 * Remove the quoted earlier message from a reply: everything from the first
 * attribution line ("On … wrote:", "在…写道：", "-----原始邮件-----", an Outlook
 * header block) and every `>` line. Returns the input when nothing would be left.
 */
export function stripQuoted(text: string): string {
  const lines = text.replace(/\r\n?/g, '\n').split('\n');
  let cut = lines.length;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    const joined = i + 1 < lines.length ? `${line} ${lines[i + 1]!.trim()}` : line;
    if (QUOTE_HEADERS.some((re) => re.test(line))) {
      cut = i;
      break;
    }
    // "On Mon, 23 Nov 2026 … <x@y>\nwrote:" wrapped over two lines.
    if (/^on\s/i.test(line) && /\swrote:\s*$/i.test(joined) && !/wrote:\s*$/i.test(line)) {
      cut = i;
      break;
    }
    if (OUTLOOK_FROM.test(line)) {
      const next = lines.slice(i + 1, i + 5).filter((l) => l.trim() !== '');
      if (next.some((l) => OUTLOOK_NEXT.test(l))) {
        cut = i;
        break;
      }
    }
  }
  const kept = lines
    .slice(0, cut)
    .filter((l) => !/^\s*>/.test(l))
    .join('\n')
    .replace(/\n-- \n[\s\S]*$/, '\n')
    .trim();
  return kept === '' ? text.trim() : kept;
}

// ---------------------------------------------------------------------------
// Mail → Inbound

const MessageIdish = z.string().trim().min(3).max(998);

const MailFacts = z.object({
  messageId: MessageIdish.nullable(),
  from: z.object({ address: Email(), name: z.string().nullable() }),
  replyTo: Email().nullable(),
  subject: z.string().nullable(),
  date: z.date().nullable(),
  inReplyTo: z.array(MessageIdish),
  references: z.array(MessageIdish),
  content: z.string(),
  attachments: z.array(z.object({ fileName: z.string().min(1), mimeType: z.string().min(1), data: z.instanceof(Buffer) })),
});
export type MailFacts = z.infer<typeof MailFacts>;

/** `<id@host>` as the thread key: trimmed, one pair of angle brackets. */
export function normalizeMessageId(id: string): string {
  const t = id.trim().replace(/^<+/, '').replace(/>+$/, '').trim();
  return `<${t}>`;
}

function idList(v: unknown): string[] {
  const raw = Array.isArray(v) ? v : typeof v === 'string' ? v.split(/\s+/) : [];
  const out: string[] = [];
  for (const item of raw) {
    if (typeof item !== 'string') continue;
    for (const m of item.match(/<[^<>\s]+>/g) ?? (item.trim() ? [item.trim()] : [])) out.push(normalizeMessageId(m));
  }
  return [...new Set(out)].slice(0, 100);
}

function firstAddress(a: AddressObject | AddressObject[] | undefined): { address: string; name: string } | null {
  const list = Array.isArray(a) ? a : a ? [a] : [];
  for (const obj of list) {
    for (const v of obj.value) {
      if (v.address) return { address: v.address, name: v.name ?? '' };
      for (const g of v.group ?? []) if (g.address) return { address: g.address, name: g.name ?? '' };
    }
  }
  return null;
}

const EXT_BY_TYPE: Record<string, string> = {
  'image/jpeg': '.jpg',
  'image/png': '.png',
  'image/gif': '.gif',
  'application/pdf': '.pdf',
  'text/plain': '.txt',
  'message/rfc822': '.eml',
};

function totalReplacement(p: ParsedMail): number {
  const from = firstAddress(p.from);
  return (
    replacementCount(p.subject) +
    replacementCount(from?.name) +
    replacementCount(p.text) +
    replacementCount(typeof p.html === 'string' ? p.html : '') +
    p.attachments.reduce((n, a) => n + replacementCount(a.filename), 0)
  );
}

const PARSER_OPTIONS = {
  skipHtmlToText: true,
  skipTextToHtml: true,
  skipImageLinks: true,
  skipTextLinks: true,
  keepCidLinks: true,
  checksumAlgo: false as const,
};

/** Facts of one parsed message; throws a ZodError when it cannot be a ticket. */
export function factsOf(p: ParsedMail): MailFacts {
  const from = firstAddress(p.from);
  const replyTo = firstAddress(p.replyTo);
  const isReply = Boolean(p.inReplyTo) || Boolean(p.references) || REPLY_SUBJECT.test(p.subject ?? '');
  const text = p.text && p.text.trim() !== '' ? p.text : typeof p.html === 'string' ? htmlToText(p.html) : '';
  const content = isReply ? stripQuoted(text) : text.trim();
  const attachments: InboundAttachment[] = p.attachments.map((a, i) => {
    const mimeType = (a.contentType || 'application/octet-stream').toLowerCase();
    return {
      fileName: a.filename?.trim() || `attachment-${i + 1}${EXT_BY_TYPE[mimeType] ?? '.bin'}`,
      mimeType,
      data: a.content,
    };
  });
  return MailFacts.parse({
    messageId: p.messageId ? normalizeMessageId(p.messageId) : null,
    from: from ? { address: from.address.trim(), name: from.name.trim() || null } : { address: '', name: null },
    replyTo: replyTo ? replyTo.address.trim() : null,
    subject: p.subject?.trim() ? p.subject.trim() : null,
    // A Date header the ticket cannot carry (year 99999, before 1970) is no date at all.
    date: p.date && !Number.isNaN(p.date.getTime()) && p.date.getUTCFullYear() >= 1970 && p.date.getUTCFullYear() <= 9999 ? p.date : null,
    inReplyTo: idList(p.inReplyTo),
    references: idList(p.references),
    content,
    attachments,
  });
}

export function rawHash(raw: Buffer): string {
  return createHash('sha256').update(raw).digest('hex');
}

/** Build the Inbound from validated facts. */
export function mailToInbound(facts: MailFacts, raw: Buffer, origin: MailOrigin): Inbound {
  const address = facts.from.address;
  const threadRefs = [...new Set([...facts.inReplyTo, ...facts.references, ...ticketNumbersIn(facts.subject)])];
  return {
    channel: CHANNEL,
    dedupeKey: facts.messageId ?? `sha256:${rawHash(raw)}`,
    channelMessageIds: facts.messageId ? [facts.messageId] : [],
    sentAt: facts.date,
    citizen: { channelUserId: address.toLowerCase(), phone: null, email: address, name: facts.from.name },
    subject: facts.subject,
    content: facts.content,
    attachments: facts.attachments,
    location: null,
    incomplete: false,
    source: {
      via: 'imap',
      messageId: facts.messageId,
      inReplyTo: facts.inReplyTo[0] ?? null,
      references: facts.references,
      replyTo: facts.replyTo && facts.replyTo.toLowerCase() !== address.toLowerCase() ? facts.replyTo : null,
      uidValidity: origin.uidValidity,
      uid: origin.uid,
      mailbox: origin.mailbox,
    },
    raw,
    threadRefs,
  };
}

/** mailparser never settles on some malformed inline message/rfc822 parts: bound it, or one mail stalls the mailbox. */
export const MIME_PARSE_TIMEOUT_MS = 8_000;

async function within<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function parseWithin(raw: Buffer, ms: number): Promise<ParsedMail> {
  return within(simpleParser(raw, PARSER_OPTIONS), ms, 'MIME parser');
}

/**
 * raw mail → Inbound, or the reason it is not a ticket. Never throws for bad
 * input: unparseable mail is a `parse_error` reject (kept with its raw bytes).
 */
export async function parseMail(raw: Buffer, origin: MailOrigin, opts: { maxBytes: number; ownAddress?: string | null; parseTimeoutMs?: number }): Promise<MailParseResult> {
  if (raw.length > opts.maxBytes) {
    return { kind: 'reject', reason: 'too_large', detail: `mail is ${raw.length} bytes, MAIL_MAX_BYTES is ${opts.maxBytes}` };
  }
  const automated = detectAutomated(raw);
  if (automated) return { kind: 'reject', ...automated };

  let parsed: ParsedMail;
  let repairedCharset: string | null = null;
  let rewritten: string[] = [];
  try {
    const ms = opts.parseTimeoutMs ?? MIME_PARSE_TIMEOUT_MS;
    // The MIME splitter behind the rewrites is bounded like the parser.
    const prepared = await within(prepareMime(raw), ms, 'MIME rewrite');
    const input = prepared?.raw ?? raw;
    rewritten = prepared?.rewritten ?? [];
    parsed = await parseWithin(input, ms);
    if (totalReplacement(parsed) > 0) {
      const repaired = await within(repairCharsets(input), ms, 'charset repair');
      if (repaired) {
        const again = await parseWithin(repaired.raw, ms);
        if (totalReplacement(again) < totalReplacement(parsed)) {
          parsed = again;
          repairedCharset = repaired.charset;
        }
      }
    }
  } catch (err) {
    return { kind: 'reject', reason: 'parse_error', detail: `MIME parse failed: ${(err as Error).message}` };
  }

  let facts: MailFacts;
  try {
    facts = factsOf(parsed);
  } catch (err) {
    const detail = err instanceof z.ZodError ? err.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') : (err as Error).message;
    return { kind: 'reject', reason: 'parse_error', detail };
  }
  if (opts.ownAddress && facts.from.address.toLowerCase() === opts.ownAddress.toLowerCase()) {
    // Our own receipt or reply came back (a BCC, a forward rule): answering it would loop.
    return { kind: 'reject', reason: 'auto_reply', detail: `mail from the mailbox's own address ${opts.ownAddress}` };
  }
  // The raw bytes stay as received (the archive keeps what the citizen sent).
  return { kind: 'inbound', inbound: mailToInbound(facts, raw, origin), repairedCharset, rewritten };
}

// ---------------------------------------------------------------------------
// Web form → Inbound

// The web form's input lives apart so serving the form does not load the MIME stack.
export { FormInput, formToInbound } from './form-input.js';
