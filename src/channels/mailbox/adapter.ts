import type { Logger } from 'pino';
import type { Config } from '../../config.js';
import type { AdapterContext, ChannelAdapter, OutboundMessage, SendResult } from '../types.js';
import { GatewayError } from '../../errors.js';
import type { ImapIntake } from './imap.js';
import type { SmtpSender, composeMail } from './smtp.js';
import { mountForm } from './form.js';
import { lookupCode, newSecret } from './security.js';

/**
 * The mayor's mailbox (市长信箱): IMAP intake, SMTP receipts and replies, and
 * the web form. Receipts are active: the core calls `send` after commit.
 */
export class MailboxAdapter implements ChannelAdapter {
  readonly channel = 'mailbox' as const;
  readonly receiptMode = 'active' as const;
  private imap: ImapIntake | null = null;
  /** IMAP and SMTP code (imapflow, mailparser, nodemailer) loads only when configured. */
  private smtp: { sender: SmtpSender; composeMail: typeof composeMail } | null = null;
  private secret: string | null = null;
  private stopping = false;
  private started = false;
  private stopPromise: Promise<void> | null = null;

  constructor(private readonly config: Config) {}

  async start(ctx: AdapterContext): Promise<void> {
    if (this.started) return;
    this.started = true;
    const log = ctx.logger;
    this.secret = this.config.MAILBOX_LOOKUP_SECRET ?? (await this.storedSecret(ctx));
    if (this.config.SMTP_URL) {
      const { SmtpSender, composeMail } = await import('./smtp.js');
      this.smtp = { sender: new SmtpSender(this.config.SMTP_URL), composeMail };
    }

    if (this.config.MAILBOX_FORM) {
      mountForm(ctx.http, {
        intake: ctx.intake,
        config: this.config,
        logger: log,
        clock: ctx.clock,
        secret: () => this.secret!,
        accepting: () => !this.stopping,
      });
    } else {
      log.info('mailbox web form off (MAILBOX_FORM=false)');
    }

    if (this.config.IMAP_URL) {
      const { ImapIntake } = await import('./imap.js');
      this.imap = new ImapIntake({
        url: this.config.IMAP_URL,
        intake: ctx.intake,
        logger: log,
        maxBytes: this.config.MAIL_MAX_BYTES,
        ownAddress: this.config.MAILBOX_ADDRESS ?? null,
        pollIntervalMs: this.config.IMAP_POLL_INTERVAL,
        reconnectMaxMs: this.config.IMAP_RECONNECT_MAX,
        lease: ctx.lease('mailbox:imap'),
      });
      // Runs in the background: the gateway starts even while the IMAP server is away.
      this.imap.start();
    } else {
      log.info('mailbox IMAP intake off (IMAP_URL not set)');
    }
    if (!this.smtp) log.info('mailbox SMTP off (SMTP_URL not set): mail receipts and replies cannot be sent');
  }

  /** A generated look-up secret, kept in the channel state so codes stay valid across restarts. */
  private async storedSecret(ctx: AdapterContext): Promise<string> {
    const state = ctx.intake.state('mailbox');
    const existing = await state.get('lookupSecret');
    if (existing) return existing;
    const fresh = newSecret();
    await state.set('lookupSecret', fresh);
    // Two instances racing: whichever write landed is the one everybody uses.
    return (await state.get('lookupSecret')) ?? fresh;
  }

  async send(msg: OutboundMessage): Promise<SendResult> {
    const footer =
      msg.kind === 'receipt' && msg.ticketId && msg.ticketNumber && this.secret && this.config.MAILBOX_FORM
        ? this.lookupFooter(msg.ticketNumber, lookupCode(this.secret, msg.ticketId))
        : null;
    const from = { name: this.config.MAILBOX_FROM_NAME, address: this.config.MAILBOX_ADDRESS ?? '' };
    if (!this.smtp) {
      // A web-form letter: the submission page was the receipt, and answers are read on the status page.
      if (msg.source.via === 'web') return { via: 'web', upstreamId: null };
      throw new GatewayError('CHANNEL_OFF', 'SMTP_URL is not set: mail cannot be sent', { transient: false });
    }
    const mail = this.smtp.composeMail(msg, from, footer);
    if (!mail) {
      // A web-form letter with no e-mail address answers on its status page.
      if (msg.source.via === 'web') return { via: 'web', upstreamId: null };
      throw new GatewayError('SEND_PERMANENT', 'the citizen left no e-mail address', { transient: false, detail: { ticketId: msg.ticketId } });
    }
    return this.smtp.sender.send(mail);
  }

  private lookupFooter(number: string, code: string): string {
    const base = (this.config.PUBLIC_URL ?? '').replace(/\/+$/, '');
    const link = `${base}/mailbox/status?number=${encodeURIComponent(number)}&code=${code}`;
    return `工单号：${number}\n查询码：${code}\n办理进度查询：${link}`;
  }

  status(): Record<string, unknown> {
    return {
      imap: this.imap ? this.imap.status() : 'off',
      smtp: this.smtp ? 'on' : 'off',
      form: this.config.MAILBOX_FORM,
    };
  }

  stop(): Promise<void> {
    this.stopPromise ??= (async () => {
      this.stopping = true;
      await this.imap?.stop();
      this.smtp?.sender.close();
    })();
    return this.stopPromise;
  }
}

export function createMailboxAdapter(config: Config, logger: Logger): ChannelAdapter | null {
  if (config.SMTP_URL && !config.MAILBOX_ADDRESS) {
    throw new GatewayError('CONFIG_INVALID', 'invalid configuration: MAILBOX_ADDRESS is required when SMTP_URL is set (the From address of receipts)');
  }
  if (config.IMAP_URL && !config.SMTP_URL) {
    logger.warn({ channel: 'mailbox' }, 'IMAP_URL is set but SMTP_URL is not: mail tickets get no receipt');
  }
  return new MailboxAdapter(config);
}
