import { createHash } from 'node:crypto';
import nodemailer, { type Transporter } from 'nodemailer';
import type SMTPPool from 'nodemailer/lib/smtp-pool/index.js';
import type { OutboundMessage, SendResult } from '../types.js';
import { GatewayError } from '../../errors.js';
import { normalizeMessageId } from './parse.js';

/**
 * Receipts and replies by SMTP (nodemailer), threaded into the citizen's
 * conversation: In-Reply-To the citizen's mail, References the whole thread,
 * `Re:` subject carrying the ticket number so a reply without headers still
 * finds the ticket. 4xx and connection failures are transient, 5xx permanent.
 */

export interface MailOut {
  from: { name: string; address: string };
  to: string;
  subject: string;
  text: string;
  messageId: string;
  inReplyTo: string | null;
  references: string[];
  headers: Record<string, string>;
}

const REPLY_PREFIX = /^\s*((re|aw|sv|fw|fwd|回复|答复|回覆|转发)\s*[:：]\s*)+/i;
const MAX_REFERENCES = 20;

/** Deterministic per outbound id: a retried send carries the same Message-ID, so a receiving system can drop the copy. */
export function outboundMessageId(outboundId: string, fromAddress: string): string {
  const domain = fromAddress.split('@')[1] ?? 'localhost';
  const h = createHash('sha256').update(outboundId).digest('hex').slice(0, 32);
  return `<${h}.12345@${domain}>`;
}

export function replySubject(subject: string | null, ticketNumber: string | null): string {
  const base = (subject ?? '').replace(REPLY_PREFIX, '').trim();
  const tag = ticketNumber && !base.includes(ticketNumber) ? `[工单号 ${ticketNumber}]` : '';
  const body = [base || '12345市长信箱', tag].filter(Boolean).join(' ');
  return `Re: ${body}`;
}

function str(v: unknown): string | null {
  return typeof v === 'string' && v.trim() !== '' ? v.trim() : null;
}

/** Where an answer goes: Reply-To of the citizen's mail, else their address. Null when there is none. */
export function recipientOf(msg: OutboundMessage): string | null {
  return str(msg.source.replyTo) ?? str(msg.citizen.email);
}

/** Pure: the mail to send for one outbound message. */
export function composeMail(msg: OutboundMessage, from: { name: string; address: string }, footer: string | null): MailOut | null {
  const to = recipientOf(msg);
  if (!to) return null;
  const citizenMsgId = str(msg.source.messageId);
  const refs = Array.isArray(msg.source.references) ? (msg.source.references as unknown[]).filter((r): r is string => typeof r === 'string') : [];
  const thread = [...refs, ...(citizenMsgId ? [citizenMsgId] : []), ...msg.threadIds.filter((t) => t.startsWith('<'))].map(normalizeMessageId);
  const references = [...new Set(thread)].slice(-MAX_REFERENCES);
  const headers: Record<string, string> = {};
  if (msg.ticketNumber) headers['X-12345-Ticket'] = msg.ticketNumber;
  // RFC 3834: receipts and notices are automatic responses; mark them so that
  // vacation responders do not answer them (and start a loop).
  if (msg.kind !== 'reply') headers['Auto-Submitted'] = 'auto-replied';
  return {
    from,
    to,
    subject: replySubject(msg.subject, msg.ticketNumber),
    text: footer ? `${msg.text}\n\n${footer}` : msg.text,
    messageId: outboundMessageId(msg.id, from.address),
    inReplyTo: citizenMsgId ? normalizeMessageId(citizenMsgId) : (references.at(-1) ?? null),
    references,
    headers,
  };
}

interface SmtpError {
  code?: string;
  responseCode?: number;
  response?: string;
  command?: string;
  message?: string;
}

/** nodemailer error → GatewayError: 5xx permanent, 4xx and everything else (connection, timeout) transient. */
export function classifySmtpError(err: unknown): GatewayError {
  const e = (err ?? {}) as SmtpError;
  const detail = { code: e.code ?? null, responseCode: e.responseCode ?? null, response: e.response ?? null, command: e.command ?? null };
  if (typeof e.responseCode === 'number' && e.responseCode >= 500) {
    return new GatewayError('SEND_PERMANENT', `SMTP server refused the mail: ${e.response ?? e.message}`, { transient: false, detail, cause: err });
  }
  return new GatewayError('SEND_TRANSIENT', `SMTP send failed: ${e.response ?? e.message ?? String(err)}`, { transient: true, detail, cause: err });
}

export class SmtpSender {
  private transport: Transporter<SMTPPool.SentMessageInfo> | null = null;
  private closed = false;

  constructor(private readonly url: string) {}

  private get t(): Transporter<SMTPPool.SentMessageInfo> {
    if (this.closed) throw new GatewayError('SHUTTING_DOWN', 'mail sender is stopped');
    this.transport ??= nodemailer.createTransport({
      url: this.url,
      pool: true,
      maxConnections: 2,
      connectionTimeout: 15_000,
      greetingTimeout: 15_000,
      socketTimeout: 60_000,
      logger: false,
    } as SMTPPool.Options);
    return this.transport;
  }

  async send(mail: MailOut): Promise<SendResult> {
    try {
      const info = await this.t.sendMail({
        from: mail.from,
        to: mail.to,
        subject: mail.subject,
        text: mail.text,
        messageId: mail.messageId,
        inReplyTo: mail.inReplyTo ?? undefined,
        references: mail.references.length ? mail.references : undefined,
        headers: mail.headers,
        textEncoding: 'base64',
      });
      return { via: 'smtp', upstreamId: normalizeMessageId(info.messageId || mail.messageId) };
    } catch (err) {
      if (err instanceof GatewayError) throw err;
      throw classifySmtpError(err);
    }
  }

  close(): void {
    this.closed = true;
    this.transport?.close();
    this.transport = null;
  }
}
