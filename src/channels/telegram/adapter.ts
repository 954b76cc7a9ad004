import { timingSafeEqual } from 'node:crypto';
import express, { type NextFunction, type Request, type Response } from 'express';
import { Api, NetworkError, TelegramApiError, TimeoutError, longPoll } from 'node-telegram-bot-api';
import type { Logger } from 'pino';
import type { Config } from '../../config.js';
import { trackedWebhook, webhookBodyError } from '../../http/webhook.js';
import { GatewayError, errorCode, errorMessage, isTransient } from '../../errors.js';
import type { AdapterContext, ChannelAdapter, InboundAttachment, OutboundMessage, SendResult } from '../types.js';
import { START_WELCOME_ZH, classify, fileMeta, isTransientTelegramError, parseUpdate, pickPhoto, toInbound, type PhotoSize, type TelegramUpdate } from './parse.js';

/**
 * Telegram bot: webhook (POST /telegram/webhook, authenticated by the
 * X-Telegram-Bot-Api-Secret-Token header) when TELEGRAM_WEBHOOK_SECRET is set,
 * else long polling with getUpdates. Receipts and replies with sendMessage.
 *
 * Acknowledgement: a webhook delivery is answered 2xx only after the ticket is
 * durable; in polling mode the offset (which confirms updates to Telegram) only
 * moves past an update once accept() has resolved for it.
 */
export function createTelegramAdapter(config: Config, logger: Logger): ChannelAdapter | null {
  return new TelegramAdapter(config, logger);
}

/** Telegram's own limit for one message. */
const MAX_TEXT = 4096;
const OFFSET_KEY = 'offset';

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Telegram errors → GatewayError, keeping Telegram's answer in `detail`. */
function sendError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  if (err instanceof TelegramApiError) {
    const transient = isTransientTelegramError(err.errorCode);
    return new GatewayError(transient ? 'SEND_TRANSIENT' : 'SEND_PERMANENT', `Telegram refused: ${err.errorCode} ${err.description}`, {
      transient,
      detail: { error_code: err.errorCode, description: err.description, parameters: err.parameters ?? null },
      cause: err,
    });
  }
  if (err instanceof NetworkError || err instanceof TimeoutError) {
    return new GatewayError('SEND_TRANSIENT', `Telegram API unreachable: ${err.message}`, { transient: true, cause: err });
  }
  return new GatewayError('SEND_TRANSIENT', errorMessage(err), { transient: true, cause: err });
}

/** Split text at Telegram's per-message limit, preferring line breaks. */
export function splitText(text: string, max = MAX_TEXT): string[] {
  const chars = [...text];
  if (chars.length <= max) return [text];
  const parts: string[] = [];
  let rest = chars;
  while (rest.length > max) {
    let cut = rest.lastIndexOf('\n', max);
    if (cut < max / 2) cut = max;
    parts.push(rest.slice(0, cut).join(''));
    rest = rest.slice(rest[cut] === '\n' ? cut + 1 : cut);
  }
  if (rest.length) parts.push(rest.join(''));
  return parts;
}

class TelegramAdapter implements ChannelAdapter {
  readonly channel = 'telegram' as const;
  readonly receiptMode = 'active' as const;
  private ctx: AdapterContext | null = null;
  private readonly api: Api;
  private readonly apiRoot: string;
  private stopping = false;
  private stopped: Promise<void> | null = null;
  private pollAbort: AbortController | null = null;
  private pollLoop: Promise<void> | null = null;
  private readonly inflight = new Set<Promise<unknown>>();
  private counters = { updates: 0, tickets: 0, badSecret: 0, mediaErrors: 0, pollErrors: 0 };
  private lastPollError: string | null = null;

  constructor(
    private readonly config: Config,
    private readonly logger: Logger,
  ) {
    this.apiRoot = config.TELEGRAM_API_URL.replace(/\/+$/, '');
    // No retries inside the client: the core retries sends with backoff and the
    // polling loop retries getUpdates itself; a hidden retry could send twice.
    this.api = new Api(config.TELEGRAM_BOT_TOKEN!, { apiRoot: this.apiRoot, maxRetries: 0, timeoutMs: 15_000 });
  }

  private get mode(): 'webhook' | 'polling' {
    return this.config.TELEGRAM_WEBHOOK_SECRET ? 'webhook' : 'polling';
  }

  async start(ctx: AdapterContext): Promise<void> {
    this.ctx = ctx;
    if (this.mode === 'webhook') {
      const body = express.text({ type: () => true, limit: this.config.HTTP_JSON_LIMIT, defaultCharset: 'utf-8' });
      ctx.http.post(
        '/telegram/webhook',
        // Authenticate before reading the body.
        (req: Request, res: Response, next: NextFunction) => {
          const given = req.get('x-telegram-bot-api-secret-token');
          if (typeof given === 'string' && safeEqual(given, this.config.TELEGRAM_WEBHOOK_SECRET!)) return next();
          this.counters.badSecret++;
          this.logger.warn({ channel: 'telegram', ip: req.ip, present: typeof given === 'string' }, 'webhook call with a wrong secret token');
          res.status(401).type('text/plain').send('unauthorized');
        },
        (req: Request, res: Response, next: NextFunction) => {
          // Telegram posts a JSON-serialized Update.
          if (req.is('application/json')) return next();
          res.status(415).type('text/plain').send('expected application/json');
        },
        body,
        trackedWebhook('telegram', this.logger, this.inflight, (req, res) => this.onWebhook(req, res)),
        webhookBodyError,
      );
      if (this.config.PUBLIC_URL) {
        const url = `${this.config.PUBLIC_URL.replace(/\/+$/, '')}/telegram/webhook`;
        // Registration is best-effort: the operator may have set the webhook already.
        void this.api
          .setWebhook({ url, secret_token: this.config.TELEGRAM_WEBHOOK_SECRET! })
          .then(() => this.logger.info({ channel: 'telegram', url }, 'webhook registered'))
          .catch((err: unknown) => this.logger.warn({ channel: 'telegram', err: errorMessage(err) }, 'could not register the webhook'));
      }
      this.logger.info({ channel: 'telegram' }, 'Telegram webhook listening on /telegram/webhook');
    } else {
      this.pollLoop = this.poll();
      this.logger.info({ channel: 'telegram' }, 'Telegram long polling started');
    }
  }

  private async onWebhook(req: Request, res: Response): Promise<void> {
    if (this.stopping) {
      res.status(503).type('text/plain').send('shutting down');
      return;
    }
    const raw = typeof req.body === 'string' ? req.body : '';
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch {
      value = undefined;
    }
    try {
      await this.handleUpdate(value, raw);
    } catch (err) {
      if (isTransient(err)) {
        // Telegram redelivers after a non-2xx answer; the update_id dedupes it.
        this.logger.error({ channel: 'telegram', code: errorCode(err) }, 'cannot store the update: asking Telegram to redeliver');
        res.status(503).type('text/plain').send('retry later');
        return;
      }
      throw err;
    }
    res.status(200).json({ ok: true });
  }

  /** Long polling. The stored offset only moves past an update after it is durable. */
  private async poll(): Promise<void> {
    const ctx = this.ctx!;
    const state = ctx.intake.state('telegram');
    const stored = Number(await state.get(OFFSET_KEY).catch(() => null));
    let offset: number | undefined = Number.isSafeInteger(stored) && stored > 0 ? stored : undefined;
    let backoff = 1000;
    const timeout = Math.max(1, Math.round(this.config.TELEGRAM_POLL_TIMEOUT / 1000));
    let webhookCleared = false;
    // One instance polls at a time: two getUpdates callers would each confirm the other's updates away.
    const lease = ctx.lease('telegram:polling');
    lease.onLost(() => this.pollAbort?.abort());
    while (!this.stopping) {
      if (!lease.held && !(await lease.acquire(() => this.stopping))) break;
      const abort = new AbortController();
      this.pollAbort = abort;
      try {
        // The offset may have moved on while another instance polled.
        const latest = Number(await state.get(OFFSET_KEY).catch(() => null));
        if (Number.isSafeInteger(latest) && latest > (offset ?? 0)) offset = latest;
        if (!webhookCleared) {
          // getUpdates is refused (409) while a webhook is registered.
          await this.api.deleteWebhook({ drop_pending_updates: false }, abort.signal);
          webhookCleared = true;
        }
        for await (const update of longPoll(
          this.api,
          { offset, timeout, retry: true, onError: (err) => this.notePollError(err) },
          abort.signal,
        )) {
          while (ctx.intake.backlogHigh() && !this.stopping) await sleep(500);
          const raw = JSON.stringify(update);
          await this.handleUpdate(update, raw);
          offset = update.update_id + 1;
          await state.set(OFFSET_KEY, String(offset));
          backoff = 1000;
          if (this.stopping) break;
        }
      } catch (err) {
        if (this.stopping) break;
        if (!lease.held) continue;
        this.notePollError(err);
        await sleep(backoff, abort.signal);
        backoff = Math.min(backoff * 2, 30_000);
      }
    }
  }

  private notePollError(err: unknown): void {
    this.counters.pollErrors++;
    this.lastPollError = errorMessage(err);
    this.logger.warn({ channel: 'telegram', code: errorCode(err), err: errorMessage(err) }, 'polling problem: retrying');
  }

  /**
   * One update, durably. Throws (transient) when it could not be stored, so the
   * caller does not acknowledge it to Telegram.
   */
  private async handleUpdate(value: unknown, raw: string): Promise<void> {
    const intake = this.ctx!.intake;
    this.counters.updates++;
    let update: TelegramUpdate;
    try {
      update = parseUpdate(value);
    } catch (err) {
      await intake.reject({ channel: 'telegram', reason: 'parse_error', detail: errorMessage(err), raw });
      return;
    }
    const kind = classify(update);
    switch (kind.kind) {
      case 'ignored':
        this.logger.debug({ channel: 'telegram', type: kind.type, updateId: update.update_id }, 'update ignored');
        return;
      case 'start':
        await this.api
          .sendMessage({ chat_id: kind.message.chat.id, text: START_WELCOME_ZH })
          .catch((err: unknown) => this.logger.warn({ channel: 'telegram', err: errorMessage(err) }, 'could not send the welcome text'));
        return;
      case 'unsupported':
        await intake.reject({ channel: 'telegram', reason: 'unsupported_type', detail: `message type ${kind.type} is not supported`, raw });
        return;
      case 'message': {
        let attachments: InboundAttachment[] = [];
        let mediaError: string | null = null;
        if (kind.type === 'photo') ({ attachments, mediaError } = await this.fetchPhoto(kind.message.photo ?? []));
        const result = await intake.accept(toInbound(update, { raw, attachments, mediaError }));
        if (result.status !== 'rejected') this.counters.tickets++;
        return;
      }
    }
  }

  private async fetchPhoto(sizes: PhotoSize[]): Promise<{ attachments: InboundAttachment[]; mediaError: string | null }> {
    const max = this.config.ATTACHMENT_MAX_BYTES;
    const photo = pickPhoto(sizes, max);
    if (!photo) return { attachments: [], mediaError: `every photo size is above the ${max}-byte limit` };
    const signal = AbortSignal.timeout(this.config.TELEGRAM_MEDIA_TIMEOUT);
    try {
      const file = await this.api.getFile({ file_id: photo.file_id }, signal);
      if (!file.file_path) throw new GatewayError('VENDOR_ERROR', 'getFile returned no file_path (file too big for the Bot API?)', { detail: file });
      const res = await fetch(`${this.apiRoot}/file/bot${this.config.TELEGRAM_BOT_TOKEN}/${file.file_path}`, { signal });
      if (!res.ok) {
        await res.body?.cancel().catch(() => undefined);
        throw new GatewayError('VENDOR_ERROR', `file download answered HTTP ${res.status}`, { detail: { status: res.status } });
      }
      const data = Buffer.from(await res.arrayBuffer());
      if (data.length > max) throw new GatewayError('INPUT_TOO_LARGE', `photo is ${data.length} bytes, above the ${max}-byte limit`);
      return { attachments: [{ ...fileMeta(file.file_path), data }], mediaError: null };
    } catch (err) {
      this.counters.mediaErrors++;
      const why = signal.aborted ? `download took longer than ${this.config.TELEGRAM_MEDIA_TIMEOUT} ms` : errorMessage(err);
      // The token is part of the file URL: never log the URL or the raw error cause.
      this.logger.warn({ channel: 'telegram', code: errorCode(err), why }, 'photo download failed: the ticket is made without it');
      return { attachments: [], mediaError: why };
    }
  }

  async send(msg: OutboundMessage): Promise<SendResult> {
    const chatId = typeof msg.source.chatId === 'string' || typeof msg.source.chatId === 'number' ? String(msg.source.chatId) : msg.citizen.channelUserId;
    let first: number | null = null;
    for (const text of splitText(msg.text)) {
      try {
        const sent = await this.api.sendMessage({ chat_id: chatId, text });
        first ??= sent.message_id;
      } catch (err) {
        throw sendError(err);
      }
    }
    return { via: 'sendMessage', upstreamId: first === null ? null : `${chatId}:${first}` };
  }

  stop(): Promise<void> {
    this.stopped ??= (async () => {
      this.stopping = true;
      this.pollAbort?.abort();
      const grace = new Promise<void>((r) => setTimeout(r, this.config.SHUTDOWN_GRACE).unref());
      await Promise.race([Promise.allSettled([...this.inflight, this.pollLoop ?? Promise.resolve()]), grace]);
      if (this.mode === 'polling' && this.ctx) await this.ctx.lease('telegram:polling').release();
    })();
    return this.stopped;
  }

  status(): Record<string, unknown> {
    return { mode: this.mode, stopping: this.stopping, lastPollError: this.lastPollError, ...this.counters };
  }
}
