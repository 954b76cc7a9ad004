import type { Channel } from '../ticket.js';

/**
 * "Status on every channel" (contract section 4): a citizen on SMS, WeChat, Weibo
 * or Telegram asks where a ticket stands by sending only its number. Pure: the
 * intake decides with `statusQueryNumber` before anything is deduped or stored,
 * and words the answer with `statusAnswerText` / `statusNotFoundText`.
 *
 * The rule, exactly: after NFKC (full-width digits, colon, hyphen and space
 * become half-width) and trimming, the whole message is
 *   [ keyword ] [ separators ] number
 * where keyword is `查询` or `status` (any case, `/status` too: Telegram's command
 * form), separators are any run of blanks and at most one `:`, and number is
 * `YYYYMMDD-NNNNNN` (six or more digits after the hyphen, as ticket numbers are
 * counted). Anything else around it — words, punctuation, a second number — makes
 * it an ordinary message that becomes a ticket as before: "20261201-000123 号工单
 * 还没人处理，我要投诉" is a complaint, not a query.
 */

/** Channels whose citizens can only write free text, so a status query arrives as a message. */
export const STATUS_QUERY_CHANNELS: ReadonlySet<Channel> = new Set<Channel>(['sms', 'wechat', 'weibo', 'telegram']);

const QUERY = /^(?:(?:查询|\/?status)[^\S\n]*:?[^\S\n]*)?(\d{8}-\d{6,})$/iu;

/** The ticket number a message asks about, or null when the message is anything more than a status query. */
export function statusQueryNumber(text: string): string | null {
  // Long texts cannot be a query; skip normalizing them.
  if (text.length > 64) return null;
  const m = QUERY.exec(text.normalize('NFKC').trim());
  return m ? m[1]! : null;
}

/** What the answer says about a ticket of the asking citizen. */
export interface StatusFacts {
  number: string;
  state: 'received' | 'acknowledged' | 'responded';
  respondBy: number;
  breached: boolean;
  /** The latest reply's text, if downstream answered. */
  latestReply: string | null;
  now: number;
}

/** The same words as the mayor's-mailbox look-up page (mailbox/form.ts). */
export const STATE_WORDS: Record<StatusFacts['state'], string> = {
  received: '已受理，正在办理',
  acknowledged: '已受理，正在办理',
  responded: '已答复',
};

/** 3分钟, 2小时5分钟, 1天3小时: coarse enough for a text message. */
export function spanWords(ms: number): string {
  const minutes = Math.floor(Math.abs(ms) / 60_000);
  if (minutes < 1) return '不到1分钟';
  if (minutes < 60) return `${minutes}分钟`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return minutes % 60 ? `${hours}小时${minutes % 60}分钟` : `${hours}小时`;
  const days = Math.floor(hours / 24);
  return hours % 24 ? `${days}天${hours % 24}小时` : `${days}天`;
}

/**
 * The answer about a citizen's own ticket, at most `maxChars` characters (70 is one
 * UCS-2 SMS): the latest reply is cut to fit, since the citizen received it in full
 * when it was sent.
 */
export function statusAnswerText(f: StatusFacts, maxChars: number): string {
  let head = `【12345】工单${f.number}：${STATE_WORDS[f.state]}`;
  if (f.state !== 'responded') {
    const left = f.respondBy - f.now;
    head += left > 0 && !f.breached ? `，距答复期限还有${spanWords(left)}` : `，已超过答复期限${spanWords(Math.max(0, -left))}，已督办`;
  }
  if (f.latestReply === null) return `${head}。`;
  const lead = `${head}。最新答复：`;
  const room = maxChars - lead.length;
  const reply = f.latestReply.replace(/\s+/g, ' ').trim();
  if ([...reply].length <= room) return lead + reply;
  // Cut by code points: half a surrogate pair would be an unreadable character.
  return room > 1 ? `${lead}${[...reply].slice(0, room - 1).join('')}…` : `${head}。`;
}

/** The one answer for an unknown number and for another citizen's ticket: the two must be indistinguishable. */
export function statusNotFoundText(number: string): string {
  return `【12345】未查到工单${number}。请核对工单号，并用提交诉求时的同一号码或账号查询。`;
}
