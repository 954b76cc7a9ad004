import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { z } from 'zod';
import { GatewayError, parseOrReject } from '../../errors.js';
import type { Location } from '../../ticket.js';
import type { Inbound, InboundAttachment } from '../types.js';

/**
 * Pure parsing of WeChat official-account pushes (接收普通消息 / 接收事件推送) and the
 * passive-reply XML. No I/O here: the adapter downloads media and hands the result in.
 */

// Every value stays a string: MsgId is a 64-bit integer and must never pass through
// a JS number, and CDATA text such as "0012" must keep its leading zeros.
const parser = new XMLParser({
  ignoreAttributes: true,
  parseTagValue: false,
  trimValues: true,
  processEntities: true,
  ignoreDeclaration: true,
  ignorePiTags: true,
});

const str = z.string();
const optStr = z.string().optional();

/** The fields of a pushed message or event, all as strings. */
export const WechatPush = z
  .object({
    ToUserName: str,
    FromUserName: str.min(1),
    CreateTime: str.regex(/^\d{1,12}$/, 'CreateTime must be unix seconds'),
    MsgType: str.min(1),
    MsgId: optStr,
    Content: optStr,
    PicUrl: optStr,
    MediaId: optStr,
    Format: optStr,
    Recognition: optStr,
    ThumbMediaId: optStr,
    Location_X: optStr,
    Location_Y: optStr,
    Scale: optStr,
    Label: optStr,
    Title: optStr,
    Description: optStr,
    Url: optStr,
    Event: optStr,
    EventKey: optStr,
    Ticket: optStr,
    Latitude: optStr,
    Longitude: optStr,
    Precision: optStr,
  })
  .passthrough();
export type WechatPush = z.infer<typeof WechatPush>;

/** Safe-mode envelope: `<xml><ToUserName/><Encrypt/></xml>`. */
export const WechatEnvelope = z.object({ ToUserName: optStr, Encrypt: str.min(1) }).passthrough();

function flatten(value: unknown): Record<string, string> {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return {};
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (typeof v === 'string') out[k] = v;
    else if (typeof v === 'number' || typeof v === 'boolean') out[k] = String(v);
    else if (v === null || v === undefined) out[k] = '';
    // Nested elements (e.g. SendLocationInfo in menu events) are not needed: dropped.
  }
  return out;
}

/** Children of the `<xml>` root as strings. Throws INPUT_INVALID for anything that is not such a document. */
export function parseXmlFields(xml: string): Record<string, string> {
  const valid = XMLValidator.validate(xml);
  if (valid !== true) {
    throw new GatewayError('INPUT_INVALID', `WeChat push is not well-formed XML: ${valid.err.msg}`, { transient: false });
  }
  let doc: unknown;
  try {
    doc = parser.parse(xml);
  } catch (err) {
    throw new GatewayError('INPUT_INVALID', 'WeChat push is not well-formed XML', { transient: false, cause: err });
  }
  const root = (doc as { xml?: unknown } | null)?.xml;
  if (root === undefined || typeof root !== 'object' || root === null) {
    throw new GatewayError('INPUT_INVALID', 'WeChat push has no <xml> root element', { transient: false });
  }
  return flatten(root);
}

export function parsePush(xml: string): WechatPush {
  return parseOrReject(WechatPush, parseXmlFields(xml), 'WeChat push lacks required fields');
}

export function parseEnvelope(xml: string): { toUserName: string | null; encrypt: string } {
  const r = WechatEnvelope.safeParse(parseXmlFields(xml));
  if (!r.success) throw new GatewayError('INPUT_INVALID', 'safe-mode push has no <Encrypt>', { transient: false });
  return { toUserName: r.data.ToUserName ?? null, encrypt: r.data.Encrypt };
}

/** More `<Encrypt>` elements than this is not an envelope WeChat sends. */
export const MAX_ENCRYPT_ELEMENTS = 4;
// At the index of an `<Encrypt>` tag: base64 in CDATA or bare, nothing else. The
// character classes exclude the delimiters, so matching is linear in the input.
const ENCRYPT_ELEMENT = /<Encrypt>\s*(?:<!\[CDATA\[([A-Za-z0-9+/=]+)\]\]>|([A-Za-z0-9+/=]+))\s*<\/Encrypt>/y;

/**
 * The values of the `<Encrypt>` elements of a safe-mode (or compatible-mode) body,
 * found by a bounded scan instead of an XML parse, so that the signature can be
 * checked before an unauthenticated body costs a parse. Occurrences that are not
 * exactly `<Encrypt>` + base64 (CDATA or bare) + `</Encrypt>` are skipped: only a
 * value that `msg_signature` signs is ever used, wherever it stood. Throws
 * INPUT_INVALID for more than MAX_ENCRYPT_ELEMENTS occurrences.
 */
export function encryptElements(body: string): string[] {
  const out: string[] = [];
  let seen = 0;
  for (let at = body.indexOf('<Encrypt>'); at !== -1; at = body.indexOf('<Encrypt>', at + 1)) {
    if (++seen > MAX_ENCRYPT_ELEMENTS) {
      throw new GatewayError('INPUT_INVALID', `safe-mode push has more than ${MAX_ENCRYPT_ELEMENTS} <Encrypt> elements`, { transient: false });
    }
    ENCRYPT_ELEMENT.lastIndex = at;
    const m = ENCRYPT_ELEMENT.exec(body);
    if (m) out.push((m[1] ?? m[2])!);
  }
  return out;
}

export const TICKET_TYPES = ['text', 'image', 'voice', 'location', 'link', 'video', 'shortvideo'] as const;
export type TicketMsgType = (typeof TICKET_TYPES)[number];

export type Classified =
  | { kind: 'message'; msgType: TicketMsgType }
  | { kind: 'event'; event: string }
  | { kind: 'unsupported'; msgType: string };

export function classify(push: WechatPush): Classified {
  if (push.MsgType === 'event') return { kind: 'event', event: push.Event ?? '' };
  if ((TICKET_TYPES as readonly string[]).includes(push.MsgType)) return { kind: 'message', msgType: push.MsgType as TicketMsgType };
  return { kind: 'unsupported', msgType: push.MsgType };
}

/**
 * WeChat's documented dedupe rule: messages by MsgId, events (which have none) by
 * FromUserName + CreateTime.
 */
export function dedupeKeyFor(push: WechatPush): string {
  if (push.MsgId && push.MsgType !== 'event') return push.MsgId;
  return `${push.FromUserName}:${push.CreateTime}`;
}

/** The media the adapter should download for this message, if any. */
export function mediaToFetch(push: WechatPush): { mediaId: string; kind: 'image' | 'voice' } | null {
  if ((push.MsgType === 'image' || push.MsgType === 'voice') && push.MediaId) {
    return { mediaId: push.MediaId, kind: push.MsgType };
  }
  return null;
}

function toLocation(latText: string | undefined, lonText: string | undefined, address: string | null): Location | null {
  if (latText === undefined || lonText === undefined) return null;
  const lat = Number(latText);
  const lon = Number(lonText);
  if (latText.trim() === '' || lonText.trim() === '' || !Number.isFinite(lat) || !Number.isFinite(lon)) return null;
  if (lat < -90 || lat > 90 || lon < -180 || lon > 180) return null;
  return { lat, lon, address };
}

/** Unix seconds that make an ordinary ISO 8601 date (years 1970–9999): anything else is not a real send time. */
export function plausibleSeconds(s: number): boolean {
  return Number.isSafeInteger(s) && s > 0 && s < 253_402_300_800;
}

export interface MediaResult {
  attachments: InboundAttachment[];
  /** Why the media could not be fetched; the ticket is still made. */
  mediaError: string | null;
}

export interface ToInboundOptions {
  /** The XML as WeChat sent it (decrypted in safe mode): kept for audit. */
  raw: string;
  encrypted: boolean;
  media?: MediaResult;
}

function nonEmpty(...parts: (string | undefined)[]): string {
  return parts
    .map((p) => (p ?? '').trim())
    .filter(Boolean)
    .join('\n');
}

/** One citizen message → Inbound. Only for `classify(push).kind === 'message'`. */
export function toInbound(push: WechatPush, opts: ToInboundOptions): Inbound {
  const media = opts.media ?? { attachments: [], mediaError: null };
  const source: Record<string, unknown> = {
    via: 'official-account',
    msgType: push.MsgType,
    toUserName: push.ToUserName,
    msgId: push.MsgId ?? null,
    encrypted: opts.encrypted,
  };
  let content = '';
  let location: Location | null = null;
  switch (push.MsgType) {
    case 'text':
      content = push.Content ?? '';
      break;
    case 'image':
      source.mediaId = push.MediaId ?? null;
      source.picUrl = push.PicUrl ?? null;
      // With the picture lost, its URL is the only trace a case worker has of it.
      if (media.attachments.length === 0) content = nonEmpty('[图片]', push.PicUrl);
      break;
    case 'voice':
      source.mediaId = push.MediaId ?? null;
      source.format = push.Format ?? null;
      source.recognition = push.Recognition ?? null;
      content = (push.Recognition ?? '').trim();
      if (content === '' && media.attachments.length === 0) content = '[语音]';
      break;
    case 'video':
    case 'shortvideo':
      source.mediaId = push.MediaId ?? null;
      source.thumbMediaId = push.ThumbMediaId ?? null;
      content = push.MsgType === 'video' ? '[视频]' : '[小视频]';
      break;
    case 'location': {
      const label = push.Label?.trim() || null;
      location = toLocation(push.Location_X, push.Location_Y, label);
      source.scale = push.Scale ?? null;
      content = label ?? (location ? `[位置] ${location.lat},${location.lon}` : '[位置]');
      break;
    }
    case 'link':
      source.url = push.Url ?? null;
      content = nonEmpty(push.Title, push.Description, push.Url);
      break;
    default:
      throw new GatewayError('INPUT_UNSUPPORTED', `WeChat MsgType ${push.MsgType} is not a citizen message`, { transient: false });
  }
  if (media.mediaError) source.mediaError = media.mediaError;
  const created = Number(push.CreateTime);
  return {
    channel: 'wechat',
    dedupeKey: dedupeKeyFor(push),
    channelMessageIds: push.MsgId ? [push.MsgId] : [],
    sentAt: plausibleSeconds(created) ? new Date(created * 1000) : null,
    citizen: { channelUserId: push.FromUserName, phone: null, email: null, name: null },
    subject: null,
    content,
    attachments: media.attachments,
    location,
    incomplete: false,
    source,
    raw: opts.raw,
  };
}

/** File name and type for downloaded media when WeChat's headers do not say. */
export function mediaFileName(mediaId: string, kind: 'image' | 'voice', contentType: string | null, disposition: string | null, format?: string): InboundAttachment['fileName'] {
  const m = disposition ? /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(disposition) : null;
  if (m?.[1]) {
    let name = m[1];
    try {
      name = decodeURIComponent(name);
    } catch {
      // A malformed %-escape: keep the name as sent rather than lose the file.
    }
    // Never a path: separators, control characters and leading dots go.
    name = name.replace(/[/\\\u0000-\u001f\u007f]/g, '_').replace(/^\.+/, '').trim().slice(0, 200);
    if (name) return name;
  }
  const formatExt = (format ?? '').toLowerCase().replace(/[^a-z0-9]/g, '').slice(0, 10);
  const ext = extensionFor(contentType) ?? (kind === 'voice' ? formatExt || 'amr' : 'jpg');
  return `${mediaId.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 64)}.${ext}`;
}

function extensionFor(contentType: string | null): string | null {
  const t = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  const map: Record<string, string> = {
    'image/jpeg': 'jpg',
    'image/jpg': 'jpg',
    'image/png': 'png',
    'image/gif': 'gif',
    'audio/amr': 'amr',
    'audio/speex': 'speex',
    'audio/mpeg': 'mp3',
    'video/mp4': 'mp4',
  };
  return map[t] ?? null;
}

export function mimeFor(kind: 'image' | 'voice', contentType: string | null, format?: string): string {
  const t = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (t && t !== 'application/octet-stream' && t.includes('/')) return t;
  if (kind === 'image') return 'image/jpeg';
  return format?.toLowerCase() === 'speex' ? 'audio/speex' : 'audio/amr';
}

/** CDATA cannot contain `]]>`: split it across two sections. */
export function cdata(text: string): string {
  return `<![CDATA[${text.replace(/]]>/g, ']]]]><![CDATA[>')}]]>`;
}

/** Passive text reply (被动回复用户消息): To/From swap relative to the inbound message. */
export function textReplyXml(opts: { toUser: string; fromUser: string; content: string; createTime: number }): string {
  return (
    `<xml><ToUserName>${cdata(opts.toUser)}</ToUserName><FromUserName>${cdata(opts.fromUser)}</FromUserName>` +
    `<CreateTime>${Math.floor(opts.createTime)}</CreateTime><MsgType>${cdata('text')}</MsgType>` +
    `<Content>${cdata(opts.content)}</Content></xml>`
  );
}

/** Safe-mode reply envelope. */
export function encryptedReplyXml(opts: { encrypt: string; signature: string; timestamp: string; nonce: string }): string {
  return (
    `<xml><Encrypt>${cdata(opts.encrypt)}</Encrypt><MsgSignature>${cdata(opts.signature)}</MsgSignature>` +
    `<TimeStamp>${opts.timestamp}</TimeStamp><Nonce>${cdata(opts.nonce)}</Nonce></xml>`
  );
}

export const DEFAULT_WELCOME_ZH =
  '您好，欢迎关注12345政务服务便民热线。请直接发送您的诉求（时间、地点、事项），也可以发送图片、语音或位置，我们会告知工单号并在规定时限内答复。紧急情况请拨打110、119、120或122。';
