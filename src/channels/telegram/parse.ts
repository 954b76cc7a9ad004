import { z } from 'zod';
import { GatewayError, parseOrReject } from '../../errors.js';
import type { Location } from '../../ticket.js';
import type { Inbound, InboundAttachment } from '../types.js';

/**
 * Pure parsing of Telegram Bot API `Update` objects (https://core.telegram.org/bots/api#update).
 * Telegram ids fit in 52 bits ("at most 52 significant bits"), so JSON numbers are exact.
 */

const User = z.object({
  id: z.number().int(),
  is_bot: z.boolean().optional(),
  first_name: z.string().optional(),
  last_name: z.string().optional(),
  username: z.string().optional(),
  language_code: z.string().optional(),
});

const PhotoSize = z.object({
  file_id: z.string(),
  file_unique_id: z.string().optional(),
  width: z.number().optional(),
  height: z.number().optional(),
  file_size: z.number().optional(),
});
export type PhotoSize = z.infer<typeof PhotoSize>;

const TgLocation = z.object({ latitude: z.number(), longitude: z.number() });

export const TelegramMessage = z
  .object({
    message_id: z.number().int(),
    date: z.number().int(),
    chat: z.object({ id: z.number().int(), type: z.string() }).passthrough(),
    from: User.optional(),
    text: z.string().optional(),
    caption: z.string().optional(),
    photo: z.array(PhotoSize).optional(),
    location: TgLocation.optional(),
    venue: z.object({ location: TgLocation, title: z.string().optional(), address: z.string().optional() }).optional(),
    contact: z
      .object({ phone_number: z.string(), first_name: z.string().optional(), last_name: z.string().optional(), user_id: z.number().int().optional() })
      .optional(),
  })
  .passthrough();
export type TelegramMessage = z.infer<typeof TelegramMessage>;

export const TelegramUpdate = z.object({ update_id: z.number().int().nonnegative(), message: TelegramMessage.optional() }).passthrough();
export type TelegramUpdate = z.infer<typeof TelegramUpdate>;

export function parseUpdate(value: unknown): TelegramUpdate {
  return parseOrReject(TelegramUpdate, value, 'not a Telegram Update');
}

export type Classified =
  | { kind: 'message'; message: TelegramMessage; type: 'text' | 'photo' | 'location' | 'venue' | 'contact' }
  | { kind: 'start'; message: TelegramMessage }
  /** A message of a type we cannot make a ticket of (sticker, document…): recorded as rejected. */
  | { kind: 'unsupported'; message: TelegramMessage; type: string }
  /** Not a citizen message at all (edited_message, callback_query, my_chat_member…): acknowledged and dropped. */
  | { kind: 'ignored'; type: string };

export function classify(update: TelegramUpdate): Classified {
  const m = update.message;
  if (!m) {
    const type = Object.keys(update).find((k) => k !== 'update_id') ?? 'empty';
    return { kind: 'ignored', type };
  }
  if (m.from?.is_bot) return { kind: 'ignored', type: 'bot_message' };
  if (m.photo && m.photo.length > 0) return { kind: 'message', message: m, type: 'photo' };
  if (m.venue) return { kind: 'message', message: m, type: 'venue' };
  if (m.location) return { kind: 'message', message: m, type: 'location' };
  if (m.contact) return { kind: 'message', message: m, type: 'contact' };
  if (typeof m.text === 'string') {
    // `/start` is what every new user sends when opening the bot: a greeting, not a request.
    if (/^\/start(@\w+)?(\s|$)/.test(m.text.trim()) && m.text.trim().split(/\s+/).length <= 2) return { kind: 'start', message: m };
    return { kind: 'message', message: m, type: 'text' };
  }
  const known = ['sticker', 'document', 'video', 'voice', 'audio', 'animation', 'video_note', 'poll', 'dice', 'game', 'story'];
  const type = known.find((k) => k in m) ?? 'other';
  return { kind: 'unsupported', message: m, type };
}

/** The largest photo size Telegram offers that is within our attachment limit. */
export function pickPhoto(sizes: PhotoSize[], maxBytes: number): PhotoSize | null {
  const fitting = sizes.filter((s) => s.file_size === undefined || s.file_size <= maxBytes);
  if (fitting.length === 0) return null;
  return fitting.reduce((best, s) => ((s.width ?? 0) * (s.height ?? 0) >= (best.width ?? 0) * (best.height ?? 0) ? s : best));
}

/** Telegram shares phone numbers in international format, with or without the leading `+`. */
export function normalizePhone(phone: string): string {
  const digits = phone.replace(/[\s()-]/g, '');
  return /^\d{6,15}$/.test(digits) ? `+${digits}` : digits;
}

function displayName(m: TelegramMessage): string | null {
  const f = m.from;
  if (!f) return null;
  const name = [f.first_name, f.last_name].filter(Boolean).join(' ').trim();
  const out = name || f.username || null;
  return out === null ? null : wellFormed(out);
}

/** JSON `\\uD800`-style escapes can carry lone surrogates: replace them so every text is well-formed UTF-16. */
export function wellFormed(text: string): string {
  return text.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
}

export interface ToInboundOptions {
  raw: string;
  attachments?: InboundAttachment[];
  mediaError?: string | null;
}

/** A citizen message → Inbound; dedupe key is the update_id (Telegram's delivery identity). */
export function toInbound(update: TelegramUpdate, opts: ToInboundOptions): Inbound {
  const c = classify(update);
  if (c.kind !== 'message') throw new GatewayError('INPUT_UNSUPPORTED', `Telegram update of kind ${c.kind} is not a ticket`, { transient: false });
  const m = c.message;
  const source: Record<string, unknown> = {
    chatId: String(m.chat.id),
    chatType: m.chat.type,
    messageId: m.message_id,
    updateId: update.update_id,
    type: c.type,
    username: m.from?.username ?? null,
    languageCode: m.from?.language_code ?? null,
  };
  let content = '';
  let location: Location | null = null;
  let phone: string | null = null;
  const attachments = opts.attachments ?? [];
  switch (c.type) {
    case 'text':
      content = m.text ?? '';
      break;
    case 'photo':
      content = m.caption ?? '';
      source.fileId = m.photo?.at(-1)?.file_id ?? null;
      if (attachments.length === 0 && content.trim() === '') content = '[图片]';
      break;
    case 'location':
      location = { lat: m.location!.latitude, lon: m.location!.longitude, address: null };
      content = `[位置] ${location.lat},${location.lon}`;
      break;
    case 'venue':
      location = { lat: m.venue!.location.latitude, lon: m.venue!.location.longitude, address: m.venue!.address ?? m.venue!.title ?? null };
      content = [m.venue!.title, m.venue!.address].filter(Boolean).join('\n') || `[位置] ${location.lat},${location.lon}`;
      break;
    case 'contact': {
      const ct = m.contact!;
      // Only a contact the citizen shared of themselves names the citizen's own phone.
      const own = ct.user_id === undefined || ct.user_id === m.from?.id;
      if (own) phone = normalizePhone(ct.phone_number);
      source.contact = { phone: normalizePhone(ct.phone_number), name: [ct.first_name, ct.last_name].filter(Boolean).join(' ') || null, own };
      content = `[联系方式] ${[ct.first_name, ct.last_name].filter(Boolean).join(' ')} ${normalizePhone(ct.phone_number)}`.trim();
      break;
    }
  }
  if (opts.mediaError) source.mediaError = opts.mediaError;
  content = wellFormed(content);
  if (location && (location.lat < -90 || location.lat > 90 || location.lon < -180 || location.lon > 180)) location = null;
  return {
    channel: 'telegram',
    dedupeKey: String(update.update_id),
    channelMessageIds: [`${m.chat.id}:${m.message_id}`],
    // Years 1970–9999 only: a date outside that range cannot be written as an ordinary ISO 8601 string.
    sentAt: m.date > 0 && m.date < 253_402_300_800 ? new Date(m.date * 1000) : null,
    citizen: { channelUserId: String(m.from?.id ?? m.chat.id), phone, email: null, name: displayName(m) },
    subject: null,
    content,
    attachments,
    location,
    incomplete: false,
    source,
    raw: opts.raw,
  };
}

/** File name and type of a downloaded Telegram file from its `file_path` (e.g. `photos/file_3.jpg`). */
export function fileMeta(filePath: string): { fileName: string; mimeType: string } {
  const fileName = filePath.split('/').pop() || 'photo.jpg';
  const ext = (fileName.split('.').pop() ?? '').toLowerCase();
  const mime: Record<string, string> = { jpg: 'image/jpeg', jpeg: 'image/jpeg', png: 'image/png', webp: 'image/webp', gif: 'image/gif' };
  return { fileName, mimeType: mime[ext] ?? 'application/octet-stream' };
}

/** Telegram API error → whether retrying can help (429 flood wait, 5xx). 400/403 (chat not found, bot blocked) cannot. */
export function isTransientTelegramError(errorCode: number | null): boolean {
  return errorCode === null || errorCode === 429 || errorCode >= 500;
}

export const START_WELCOME_ZH =
  '您好，这里是12345政务服务便民热线。请直接发送您的诉求（时间、地点、事项），也可以发送图片、位置或分享手机号，我们会告知工单号并在规定时限内答复。紧急情况请拨打110、119、120或122。';
