import type { Logger } from 'pino';
import type { Message, Wechaty } from 'wechaty';
import type { Config } from '../../config.js';
import { GatewayError, errorCode, errorMessage, isTransient } from '../../errors.js';
import type { Inbound, InboundAttachment, Intake, OutboundMessage, SendResult } from '../types.js';

/**
 * Optional second WeChat intake through any Wechaty puppet (WECHATY_PUPPET, e.g.
 * `wechaty-puppet-service` with WECHATY_PUPPET_TOKEN). A chat has no passive reply,
 * so the receipt is said back in the same chat right after the ticket is durable,
 * then recorded with `intake.acknowledged`. Replies are routed here by
 * `source.via === 'wechaty'`.
 *
 * Wechaty has no redelivery: when the store is briefly unusable the message is
 * retried here a few times before it is given up (and logged).
 */

export interface WechatyIntakeOptions {
  /** A puppet instance to use instead of loading the WECHATY_PUPPET module (tests, embedding). */
  puppet?: unknown;
}

type BuildOptions = NonNullable<Parameters<(typeof import('wechaty'))['WechatyBuilder']['build']>[0]>;

const RETRY_DELAYS_MS = [500, 1000, 2000, 4000, 8000];

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}

/** brolog levels used by Wechaty, from the gateway's pino level (Wechaty's info level is chatty). */
function wechatyLogLevel(level: string): 'silent' | 'error' | 'warn' | 'info' {
  if (level === 'silent') return 'silent';
  if (level === 'fatal' || level === 'error') return 'error';
  if (level === 'trace' || level === 'debug') return 'info';
  return 'warn';
}

export class WechatyIntake {
  private bot: Wechaty | null = null;
  private stopping = false;
  private readonly inflight = new Set<Promise<unknown>>();
  private loggedIn: string | null = null;
  private started = false;
  private counters = { messages: 0, tickets: 0, lost: 0 };
  private messageType: Record<string, number> = {};

  constructor(
    private readonly config: Config,
    private readonly logger: Logger,
    private readonly intake: Intake,
    private readonly opts: WechatyIntakeOptions = {},
  ) {}

  async start(): Promise<void> {
    // Loaded on demand: Wechaty and its puppets are a large dependency tree that
    // deployments without this intake never need to load.
    const { WechatyBuilder, log, types } = await import('wechaty');
    log.level(wechatyLogLevel(this.config.LOG_LEVEL));
    this.messageType = types.Message as unknown as Record<string, number>;
    const puppet = (this.opts.puppet ?? this.config.WECHATY_PUPPET) as BuildOptions['puppet'];
    const bot = WechatyBuilder.build({
      name: 'intake-12345',
      puppet,
      ...(this.config.WECHATY_PUPPET_TOKEN ? { puppetOptions: { token: this.config.WECHATY_PUPPET_TOKEN } } : {}),
    });
    bot.on('login', (user) => {
      this.loggedIn = user.id;
      this.logger.info({ channel: 'wechat', via: 'wechaty', user: user.id }, 'Wechaty logged in');
    });
    bot.on('logout', () => {
      this.loggedIn = null;
      this.logger.warn({ channel: 'wechat', via: 'wechaty' }, 'Wechaty logged out');
    });
    bot.on('error', (err) => this.logger.warn({ channel: 'wechat', via: 'wechaty', err: errorMessage(err) }, 'Wechaty error'));
    bot.on('message', (m) => {
      const p = this.onMessage(m).catch((err: unknown) => this.logger.error({ channel: 'wechat', via: 'wechaty', err: errorMessage(err) }, 'Wechaty message handling failed'));
      this.inflight.add(p);
      void p.finally(() => this.inflight.delete(p));
    });
    this.bot = bot;
    await bot.start();
    this.started = true;
    this.logger.info({ channel: 'wechat', via: 'wechaty', puppet: this.opts.puppet ? 'injected' : this.config.WECHATY_PUPPET }, 'Wechaty intake started');
  }

  private async toInbound(m: Message): Promise<Inbound | { unsupported: string }> {
    const T = this.messageType;
    const talker = m.talker();
    const type = m.type();
    let content = '';
    const attachments: InboundAttachment[] = [];
    const source: Record<string, unknown> = { via: 'wechaty', contactId: talker.id, messageType: type };
    if (type === T.Text) {
      content = m.text();
    } else if (type === T.Image || type === T.Audio || type === T.Attachment) {
      try {
        const box = await m.toFileBox();
        const data = await box.toBuffer();
        if (data.length <= this.config.ATTACHMENT_MAX_BYTES) {
          attachments.push({ fileName: box.name || `wechaty-${m.id}`, mimeType: box.mediaType || 'application/octet-stream', data });
        } else {
          source.mediaError = `file is ${data.length} bytes, above the ${this.config.ATTACHMENT_MAX_BYTES}-byte limit`;
        }
      } catch (err) {
        source.mediaError = errorMessage(err);
      }
      if (attachments.length === 0) content = type === T.Image ? '[图片]' : type === T.Audio ? '[语音]' : '[文件]';
    } else if (type === T.Location) {
      content = m.text() || '[位置]';
    } else if (type === T.Url) {
      content = m.text();
    } else {
      return { unsupported: String(type) };
    }
    return {
      channel: 'wechat',
      // Prefixed: Wechaty message ids and official-account MsgIds must never collide.
      dedupeKey: `wechaty:${m.id}`,
      channelMessageIds: [m.id],
      sentAt: m.date(),
      citizen: { channelUserId: talker.id, phone: null, email: null, name: talker.name() || null },
      subject: null,
      content,
      attachments,
      location: null,
      incomplete: false,
      source,
      raw: JSON.stringify({ id: m.id, type, talkerId: talker.id, text: m.text(), date: m.date().toISOString() }),
    };
  }

  private async onMessage(m: Message): Promise<void> {
    // Our own messages (receipts, replies) and group chatter are not citizen requests.
    if (this.stopping || m.self() || m.room()) return;
    this.counters.messages++;
    const inbound = await this.toInbound(m);
    if ('unsupported' in inbound) {
      await this.intake.reject({ channel: 'wechat', reason: 'unsupported_type', detail: `Wechaty message type ${inbound.unsupported}`, raw: m.text() || m.id });
      return;
    }
    for (let attempt = 0; ; attempt++) {
      try {
        const result = await this.intake.accept(inbound);
        // No ticket: say the notice or the status answer, nothing to acknowledge.
        if (result.status === 'rejected' || result.status === 'query') {
          if (result.receipt) await m.talker().say(result.receipt);
          return;
        }
        this.counters.tickets++;
        if (result.status === 'duplicate') return;
        await m.talker().say(result.receipt);
        await this.intake.acknowledged(result.ticket.id, 'wechaty-say').catch((err: unknown) =>
          this.logger.warn({ channel: 'wechat', via: 'wechaty', err: errorMessage(err) }, 'could not record the receipt'),
        );
        return;
      } catch (err) {
        if (!isTransient(err) || attempt >= RETRY_DELAYS_MS.length || this.stopping) {
          this.counters.lost++;
          this.logger.error({ channel: 'wechat', via: 'wechaty', messageId: m.id, code: errorCode(err) }, 'Wechaty message could not be stored');
          return;
        }
        await sleep(RETRY_DELAYS_MS[attempt]!);
      }
    }
  }

  async send(msg: OutboundMessage): Promise<SendResult> {
    const bot = this.bot;
    if (!bot || !this.loggedIn) throw new GatewayError('SEND_TRANSIENT', 'Wechaty is not logged in', { transient: true });
    const id = typeof msg.source.contactId === 'string' ? msg.source.contactId : msg.citizen.channelUserId;
    const contact = await bot.Contact.find({ id });
    if (!contact) throw new GatewayError('SEND_PERMANENT', `Wechaty contact ${id} not found`, { transient: false });
    try {
      const sent = await contact.say(msg.text);
      return { via: 'wechaty', upstreamId: sent && typeof sent === 'object' && 'id' in sent ? String((sent as { id: unknown }).id) : null };
    } catch (err) {
      throw new GatewayError('SEND_TRANSIENT', `Wechaty say() failed: ${errorMessage(err)}`, { transient: true, cause: err });
    }
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    await Promise.allSettled([...this.inflight]);
    await this.bot?.stop().catch((err: unknown) => this.logger.warn({ channel: 'wechat', via: 'wechaty', err: errorMessage(err) }, 'Wechaty stop failed'));
  }

  status(): Record<string, unknown> {
    return { running: this.started && !this.stopping, loggedIn: Boolean(this.loggedIn), ...this.counters };
  }
}
