import { createHash, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { GatewayError, parseOrReject } from '../../errors.js';
import type { Location } from '../../ticket.js';
import type { Inbound } from '../types.js';

/**
 * Pure parsing of Weibo fans-service (粉丝服务平台) pushes and the reply API body.
 * Sources: open.weibo.com wiki Messages_api_start, Receive_General_Message,
 * Receive_Event_Push, Send_Customer_Service_Message.
 */

/** `sha1(sort([app_secret, timestamp, nonce]).join(''))`; the timestamp is in milliseconds. */
export function weiboSignature(appSecret: string, timestamp: string, nonce: string): string {
  return createHash('sha1').update([appSecret, timestamp, nonce].sort().join(''), 'utf8').digest('hex');
}

export function verifyWeiboSignature(appSecret: string, q: { signature?: unknown; timestamp?: unknown; nonce?: unknown }): boolean {
  if (typeof q.signature !== 'string' || typeof q.timestamp !== 'string' || typeof q.nonce !== 'string') return false;
  const a = Buffer.from(weiboSignature(appSecret, q.timestamp, q.nonce), 'utf8');
  const b = Buffer.from(q.signature.toLowerCase(), 'utf8');
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Keys whose integer values are int64 Weibo ids: kept as their decimal text. */
const ID_KEYS = new Set(['sender_id', 'receiver_id', 'id', 'uid', 'vfid', 'tovfid']);

/**
 * JSON.parse, except that integer values of the id keys above come back as strings
 * taken from the raw text. Weibo UIDs are int64: `JSON.parse` would round any
 * above 2^53 silently. The scan tracks strings and escapes so text inside values
 * never matches.
 */
export function parseJsonKeepingIds(text: string): unknown {
  let out = '';
  let i = 0;
  let lastKey: string | null = null;
  let expectValue = false;
  while (i < text.length) {
    const ch = text[i]!;
    if (ch === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      const token = text.slice(i, j + 1);
      out += token;
      i = j + 1;
      // A string followed by ':' is a key.
      let k = i;
      while (k < text.length && /\s/.test(text[k]!)) k++;
      if (text[k] === ':') {
        try {
          lastKey = JSON.parse(token) as string;
        } catch {
          lastKey = null;
        }
      } else {
        lastKey = null;
        expectValue = false;
      }
      continue;
    }
    if (ch === ':') {
      expectValue = lastKey !== null;
      out += ch;
      i++;
      continue;
    }
    if (expectValue && (ch === '-' || (ch >= '0' && ch <= '9'))) {
      let j = i + 1;
      while (j < text.length && /[0-9eE+.-]/.test(text[j]!)) j++;
      const num = text.slice(i, j);
      out += lastKey !== null && ID_KEYS.has(lastKey) && /^-?\d+$/.test(num) ? `"${num}"` : num;
      i = j;
      expectValue = false;
      lastKey = null;
      continue;
    }
    if (!/\s/.test(ch)) {
      expectValue = false;
      lastKey = null;
    }
    out += ch;
    i++;
  }
  return JSON.parse(out);
}

const id = z.union([z.string().regex(/^\d{1,20}$/), z.number().int().nonnegative().transform(String)]);

export const WeiboPush = z
  .object({
    type: z.string().min(1),
    sender_id: id,
    receiver_id: id,
    created_at: z.string().min(1),
    text: z.string().optional().default(''),
    data: z.record(z.string(), z.unknown()).or(z.array(z.unknown())).or(z.string()).optional(),
  })
  .passthrough();
export type WeiboPush = z.infer<typeof WeiboPush>;

export function parsePush(raw: string): WeiboPush {
  let value: unknown;
  try {
    value = parseJsonKeepingIds(raw);
  } catch (err) {
    throw new GatewayError('INPUT_INVALID', 'Weibo push is not JSON', { transient: false, cause: err });
  }
  return parseOrReject(WeiboPush, value, 'Weibo push lacks required fields');
}

export const MESSAGE_TYPES = ['text', 'image', 'position', 'voice'] as const;

export type Classified = { kind: 'message' } | { kind: 'event'; subtype: string } | { kind: 'unsupported'; type: string };

export function classify(push: WeiboPush): Classified {
  if (push.type === 'event') return { kind: 'event', subtype: String(dataObj(push).subtype ?? '') };
  if ((MESSAGE_TYPES as readonly string[]).includes(push.type)) return { kind: 'message' };
  return { kind: 'unsupported', type: push.type };
}

/** Weibo messages have no id ("目前微博消息暂时不支持消息ID"): the documented key is sender + created_at. */
export function dedupeKeyFor(push: WeiboPush): string {
  return `${push.sender_id}:${push.created_at}`;
}

function dataObj(push: WeiboPush): Record<string, unknown> {
  return push.data && typeof push.data === 'object' && !Array.isArray(push.data) ? push.data : {};
}

const MONTHS: Record<string, number> = { Jan: 0, Feb: 1, Mar: 2, Apr: 3, May: 4, Jun: 5, Jul: 6, Aug: 7, Sep: 8, Oct: 9, Nov: 10, Dec: 11 };

/** Twitter-style `Mon Jul 16 18:09:20 +0800 2012` → Date; null when it does not match. */
export function parseCreatedAt(text: string): Date | null {
  const m = /^\w{3} (\w{3}) (\d{1,2}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2}) (\d{4})$/.exec(text.trim());
  if (!m) return null;
  const month = MONTHS[m[1]!];
  if (month === undefined) return null;
  const offsetMin = (m[6] === '-' ? -1 : 1) * (Number(m[7]) * 60 + Number(m[8]));
  const utc = Date.UTC(Number(m[9]), month, Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5])) - offsetMin * 60_000;
  const d = new Date(utc);
  return Number.isNaN(d.getTime()) ? null : d;
}

function toLocation(data: Record<string, unknown>): Location | null {
  const lat = Number(data.latitude);
  const lon = Number(data.longitude);
  if (data.latitude === undefined || data.longitude === undefined || data.latitude === '' || data.longitude === '') return null;
  if (!Number.isFinite(lat) || !Number.isFinite(lon) || lat < -90 || lat > 90 || lon < -180 || lon > 180) return null;
  return { lat, lon, address: null };
}

/** JSON `\\uD800`-style escapes can carry lone surrogates: replace them so every text is well-formed UTF-16. */
export function wellFormed(text: string): string {
  return text.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
}

const PLACEHOLDER: Record<string, string> = { image: '[图片]', voice: '[语音]', position: '[位置]' };

/** One citizen message (text, image, position, voice) → Inbound. */
export function toInbound(push: WeiboPush, raw: string): Inbound {
  const data = dataObj(push);
  const source: Record<string, unknown> = { type: push.type, receiverId: push.receiver_id, createdAt: push.created_at };
  let location: Location | null = null;
  if (push.type === 'position') location = toLocation(data);
  if (push.type === 'image' || push.type === 'voice') {
    source.vfid = data.vfid === undefined ? null : String(data.vfid);
    source.tovfid = data.tovfid === undefined ? null : String(data.tovfid);
  }
  const content = wellFormed(push.text).trim() || PLACEHOLDER[push.type] || '';
  return {
    channel: 'weibo',
    dedupeKey: dedupeKeyFor(push),
    channelMessageIds: [dedupeKeyFor(push)],
    sentAt: parseCreatedAt(push.created_at),
    citizen: { channelUserId: push.sender_id, phone: null, email: null, name: null },
    subject: null,
    content,
    attachments: [],
    location,
    incomplete: false,
    source,
    raw,
  };
}

/**
 * Body of `POST /2/messages/reply.json` (customer-service message): form-encoded,
 * `data` is the JSON `{text}` (URL-encoded by the form encoding), `receiver_id` the
 * int64 as text.
 */
export function replyForm(opts: { accessToken: string; receiverId: string; text: string }): string {
  return new URLSearchParams({
    access_token: opts.accessToken,
    type: 'text',
    data: JSON.stringify({ text: opts.text }),
    receiver_id: opts.receiverId,
  }).toString();
}

/** Weibo API error codes worth retrying: system busy, rate limits, server errors. */
export function isTransientWeiboError(status: number, errorCode: number | null): boolean {
  if (status >= 500 || status === 429) return true;
  if (errorCode === null) return false;
  return [10001, 10009, 10022, 10023, 10024, 20016].includes(errorCode);
}
