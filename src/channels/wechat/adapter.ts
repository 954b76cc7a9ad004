import express, { type NextFunction, type Request, type Response } from 'express';
import type { Logger } from 'pino';
import type { Config } from '../../config.js';
import { ReplayGuard, releaseUnlessAcknowledged, timestampFresh, trackedWebhook, webhookBodyError } from '../../http/webhook.js';
import { GatewayError, errorCode, errorMessage, isTransient } from '../../errors.js';
import type { AcceptResult, AdapterContext, ChannelAdapter, InboundAttachment, OutboundMessage, SendResult } from '../types.js';
import { WechatApi } from './api.js';
import { WechatCrypto, signatureMatches, wechatSignature } from './crypto.js';
import {
  DEFAULT_WELCOME_ZH,
  classify,
  encryptElements,
  encryptedReplyXml,
  mediaFileName,
  mediaToFetch,
  mimeFor,
  parsePush,
  textReplyXml,
  toInbound,
  type MediaResult,
  type WechatPush,
} from './parse.js';
import { WechatyIntake } from './wechaty.js';

/**
 * WeChat official account (公众号): URL verification, message push in plaintext
 * and safe mode, passive receipts within WeChat's 5-second window, media download,
 * and customer-service messages for replies. Optionally a second intake through
 * Wechaty (personal-account bots) whose replies go back through `say()`.
 */
export interface WechatAdapterOptions {
  /** A Wechaty puppet instance to use instead of loading the WECHATY_PUPPET module. */
  wechatyPuppet?: unknown;
}

export function createWechatAdapter(config: Config, logger: Logger, opts: WechatAdapterOptions = {}): ChannelAdapter | null {
  const officialAccount = Boolean(config.WECHAT_TOKEN);
  if (!officialAccount && !config.WECHATY_PUPPET && !opts.wechatyPuppet) {
    logger.info({ channel: 'wechat' }, 'channel off: WECHAT_TOKEN and WECHATY_PUPPET are not set');
    return null;
  }
  if (config.WECHAT_ENCODING_AES_KEY && !config.WECHAT_APP_ID) {
    throw new GatewayError('CONFIG_INVALID', 'WECHAT_ENCODING_AES_KEY needs WECHAT_APP_ID: safe mode checks the AppID inside each message');
  }
  return new WechatAdapter(config, logger, opts);
}

/** How long start() waits for the Wechaty puppet before going on without it. */
const WECHATY_START_WAIT_MS = 15_000;

type PushQuery = { signature?: string; timestamp?: string; nonce?: string; echostr?: string; encrypt_type?: string; msg_signature?: string };

function q(req: Request): PushQuery {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.query)) if (typeof v === 'string') out[k] = v;
  return out as PushQuery;
}

class WechatAdapter implements ChannelAdapter {
  readonly channel = 'wechat' as const;
  readonly receiptMode = 'passive' as const;
  private ctx: AdapterContext | null = null;
  private readonly crypto: WechatCrypto | null;
  private readonly api: WechatApi | null = null;
  private wechaty: WechatyIntake | null = null;
  private stopping = false;
  private stopped: Promise<void> | null = null;
  private readonly inflight = new Set<Promise<unknown>>();
  private counters = { pushes: 0, tickets: 0, badSignature: 0, mediaErrors: 0 };
  /** Plaintext signatures already used (they do not cover the body). */
  private readonly replay: ReplayGuard;

  constructor(
    private readonly config: Config,
    private readonly logger: Logger,
    private readonly opts: WechatAdapterOptions = {},
  ) {
    this.crypto = config.WECHAT_ENCODING_AES_KEY && config.WECHAT_APP_ID ? new WechatCrypto(config.WECHAT_ENCODING_AES_KEY, config.WECHAT_APP_ID) : null;
    this.replay = new ReplayGuard(config.WEBHOOK_MAX_SKEW);
    if (config.WECHAT_APP_ID && config.WECHAT_APP_SECRET) {
      this.api = new WechatApi({
        baseUrl: config.WECHAT_API_URL,
        appId: config.WECHAT_APP_ID,
        appSecret: config.WECHAT_APP_SECRET,
        clock: { now: () => (this.ctx?.clock ?? { now: () => Date.now() }).now() },
        logger,
      });
    }
  }

  async start(ctx: AdapterContext): Promise<void> {
    this.ctx = ctx;
    if (this.config.WECHAT_TOKEN) {
      // The push is XML (or, in safe mode, an XML envelope): read it as text whatever the declared type.
      const body = express.text({ type: () => true, limit: this.config.HTTP_JSON_LIMIT, defaultCharset: 'utf-8' });
      ctx.http.get('/wechat', (req, res) => this.verify(req, res));
      ctx.http.post(
        '/wechat',
        (req: Request, res: Response, next: NextFunction) => this.beforeBody(req, res, next),
        body,
        trackedWebhook('wechat', this.logger, this.inflight, (req, res) => this.onPush(req, res)),
        webhookBodyError,
      );
      if (!this.api) this.logger.warn({ channel: 'wechat' }, 'WECHAT_APP_ID/WECHAT_APP_SECRET not set: no media download and no replies through the customer-service API');
      this.logger.info({ channel: 'wechat', safeMode: Boolean(this.crypto) }, 'WeChat official-account push listening on /wechat');
    }
    if (this.config.WECHATY_PUPPET || this.opts.wechatyPuppet) {
      this.wechaty = new WechatyIntake(this.config, this.logger, ctx.intake, { puppet: this.opts.wechatyPuppet });
      // Optional intake: a puppet that cannot start (module missing, puppet service
      // unreachable) is logged and shown in /readyz, and never keeps the gateway down.
      const started = this.wechaty.start().catch((err: unknown) =>
        this.logger.error({ channel: 'wechat', via: 'wechaty', err: errorMessage(err) }, 'Wechaty intake could not start'),
      );
      await Promise.race([started, new Promise<void>((r) => setTimeout(r, WECHATY_START_WAIT_MS).unref())]);
    }
  }

  // GET /wechat — URL verification: echo `echostr` when the plain signature matches.
  private verify(req: Request, res: Response): void {
    const query = q(req);
    const token = this.config.WECHAT_TOKEN!;
    if (!query.timestamp || !query.nonce || typeof query.echostr !== 'string') {
      res.status(400).type('text/plain').send('missing parameters');
      return;
    }
    if (signatureMatches(wechatSignature(token, query.timestamp, query.nonce), query.signature)) {
      res.status(200).type('text/plain').send(query.echostr);
      return;
    }
    // Safe-mode style verification (as 企业微信 and some relays send it): echostr is
    // encrypted and signed with msg_signature; answer with the decrypted value.
    if (this.crypto && query.msg_signature && signatureMatches(wechatSignature(token, query.timestamp, query.nonce, query.echostr), query.msg_signature)) {
      try {
        res.status(200).type('text/plain').send(this.crypto.decrypt(query.echostr).message);
        return;
      } catch {
        /* falls through to 401 */
      }
    }
    this.counters.badSignature++;
    this.logger.warn({ channel: 'wechat', ip: req.ip, path: req.path }, 'URL verification with a wrong signature');
    res.status(401).type('text/plain').send('invalid signature');
  }

  private unauthorized(req: Request, res: Response, why: string): void {
    this.counters.badSignature++;
    // Never the body: an unauthenticated body is untrusted input and may hold personal data.
    this.logger.warn({ channel: 'wechat', ip: req.ip, path: req.path, why }, 'push refused: not authenticated');
    res.status(401).type('text/plain').send('invalid signature');
  }

  /**
   * Everything that can be checked from the query string, before the body is read.
   *
   * Order, and why:
   * - Plaintext mode: `signature` = sha1(token, timestamp, nonce) does not cover the
   *   body, so after it the timestamp must be inside WEBHOOK_MAX_SKEW and the
   *   signature unused (ReplayGuard); otherwise one captured query string signs
   *   any body. Only then is the body read and parsed.
   * - Safe mode: `msg_signature` covers the `<Encrypt>` value, so it can only be
   *   checked once the body is read. Here: it is present and the timestamp is fresh;
   *   in onPush the value is taken by a bounded scan (encryptElements), never an
   *   XML parse, and the XML is parsed only after decrypting what WeChat signed.
   *   A replay of a safe-mode query string carries the same `<Encrypt>`, the same
   *   message, which the MsgId dedupe makes one ticket: no ReplayGuard there.
   * - With WECHAT_ENCODING_AES_KEY set, a plaintext push is refused: its signature
   *   says nothing about the body, and WeChat in safe mode never sends one.
   */
  private beforeBody(req: Request, res: Response, next: NextFunction): void {
    const query = q(req);
    if (!query.timestamp || !query.nonce) return this.unauthorized(req, res, 'no timestamp/nonce');
    const encrypted = query.encrypt_type === 'aes';
    if (!encrypted) {
      if (this.crypto) return this.unauthorized(req, res, 'plaintext push while safe mode is on');
      if (!signatureMatches(wechatSignature(this.config.WECHAT_TOKEN!, query.timestamp, query.nonce), query.signature)) {
        return this.unauthorized(req, res, 'signature');
      }
    } else if (!query.msg_signature) {
      return this.unauthorized(req, res, 'no msg_signature');
    }
    const now = this.now();
    if (!timestampFresh(query.timestamp, 1000, now, this.config.WEBHOOK_MAX_SKEW)) return this.unauthorized(req, res, 'timestamp outside WEBHOOK_MAX_SKEW');
    if (!encrypted) {
      if (!this.replay.claim(query.signature!, Number(query.timestamp) * 1000, now)) return this.unauthorized(req, res, 'signature used before');
      releaseUnlessAcknowledged(this.replay, query.signature!, res);
    }
    next();
  }

  private async onPush(req: Request, res: Response): Promise<void> {
    const started = Date.now();
    if (this.stopping || !this.ctx) {
      res.status(503).type('text/plain').send('shutting down');
      return;
    }
    const intake = this.ctx.intake;
    const query = q(req);
    const token = this.config.WECHAT_TOKEN!;
    const raw = typeof req.body === 'string' ? req.body : Buffer.isBuffer(req.body) ? req.body.toString('utf8') : '';
    this.counters.pushes++;

    // 1. Safe mode: authenticate the body, then decrypt. (Plaintext: authenticated in beforeBody.)
    let xml: string;
    const encrypted = query.encrypt_type === 'aes';
    if (encrypted) {
      let signed: string | undefined;
      try {
        signed = encryptElements(raw).find((e) => signatureMatches(wechatSignature(token, query.timestamp!, query.nonce!, e), query.msg_signature));
      } catch {
        signed = undefined;
      }
      if (signed === undefined) return this.unauthorized(req, res, 'msg_signature');
      if (!this.crypto) {
        this.logger.error({ channel: 'wechat' }, 'safe-mode push received but WECHAT_ENCODING_AES_KEY/WECHAT_APP_ID are not set');
        res.status(503).type('text/plain').send('not configured for safe mode');
        return;
      }
      try {
        xml = this.crypto.decrypt(signed).message;
      } catch (err) {
        if (err instanceof GatewayError && err.code === 'AUTH_FAILED') return this.unauthorized(req, res, 'AppID');
        // Signed by WeChat but undecryptable (e.g. the EncodingAESKey was rotated): keep it for operators.
        await this.rejectAndAnswer(res, 'decrypt_error', errorMessage(err), raw);
        return;
      }
    } else {
      xml = raw;
    }

    // 2. Parse.
    let push: WechatPush;
    try {
      push = parsePush(xml);
    } catch (err) {
      await this.rejectAndAnswer(res, 'parse_error', errorMessage(err), xml);
      return;
    }
    const kind = classify(push);
    const replyText = (content: string) => this.passiveReply(push, content, query, encrypted);

    if (kind.kind === 'event') {
      // Events are not citizen requests. Only subscribe gets an answer: the welcome text.
      this.logger.info({ channel: 'wechat', event: kind.event, user: push.FromUserName }, 'event received');
      if (kind.event === 'subscribe') {
        await this.sendXml(res, replyText(this.config.WECHAT_WELCOME ?? DEFAULT_WELCOME_ZH));
      } else {
        this.sendSuccess(res);
      }
      return;
    }
    if (kind.kind === 'unsupported') {
      await this.rejectAndAnswer(res, 'unsupported_type', `MsgType ${kind.msgType} is not supported`, xml);
      return;
    }

    // 3. Media, bounded so that the whole answer stays inside WeChat's 5 s.
    const media = await this.fetchMedia(push);

    // 4. Durable first, then answer.
    let result: AcceptResult;
    try {
      result = await intake.accept(toInbound(push, { raw: xml, encrypted, media }));
    } catch (err) {
      if (isTransient(err)) {
        // No answer WeChat would take as final: it retries, and the retry is deduped by MsgId.
        this.logger.error({ channel: 'wechat', code: errorCode(err), msgId: push.MsgId }, 'cannot store the message: asking WeChat to retry');
        res.status(503).type('text/plain').send('retry later');
        return;
      }
      await this.rejectAndAnswer(res, 'invalid', errorMessage(err), xml);
      return;
    }
    if (result.status !== 'rejected' && result.status !== 'query') this.counters.tickets++;
    // A status query's answer is the passive reply, like a receipt.
    if (!result.receipt) {
      this.sendSuccess(res);
      return;
    }
    await this.sendXml(res, replyText(result.receipt));
    if (result.status === 'created' || result.status === 'duplicate') {
      try {
        await intake.acknowledged(result.ticket.id, 'passive-reply');
      } catch (err) {
        this.logger.warn({ channel: 'wechat', ticketId: result.ticket.id, err }, 'could not record the passive receipt');
      }
    }
    this.logger.debug({ channel: 'wechat', status: result.status, ms: Date.now() - started }, 'push answered');
  }

  private passiveReply(push: WechatPush, content: string, query: PushQuery, encrypted: boolean): string {
    const xml = textReplyXml({ toUser: push.FromUserName, fromUser: push.ToUserName, content, createTime: Math.floor(this.now() / 1000) });
    if (!encrypted || !this.crypto) return xml;
    // The official samples sign the reply with the request's own timestamp and nonce.
    const encrypt = this.crypto.encrypt(xml);
    const timestamp = query.timestamp!;
    const nonce = query.nonce!;
    return encryptedReplyXml({ encrypt, signature: wechatSignature(this.config.WECHAT_TOKEN!, timestamp, nonce, encrypt), timestamp, nonce });
  }

  private now(): number {
    return this.ctx?.clock.now() ?? Date.now();
  }

  /** Resolves once the answer has been handed to the socket. */
  private sendXml(res: Response, xml: string): Promise<void> {
    return new Promise((resolve) => {
      res.status(200).type('application/xml; charset=utf-8');
      res.on('finish', () => resolve());
      res.on('close', () => resolve());
      res.send(xml);
    });
  }

  /** `success` tells WeChat not to retry and to show nothing to the user. */
  private sendSuccess(res: Response): void {
    res.status(200).type('text/plain').send('success');
  }

  /** A failure to record goes to trackedWebhook, which answers 503 so WeChat delivers again. */
  private async rejectAndAnswer(res: Response, reason: string, detail: string, raw: string): Promise<void> {
    await this.ctx!.intake.reject({ channel: 'wechat', reason, detail, raw });
    this.logger.info({ channel: 'wechat', reason }, 'push recorded as rejected');
    this.sendSuccess(res);
  }

  private async fetchMedia(push: WechatPush): Promise<MediaResult> {
    const want = mediaToFetch(push);
    if (!want) return { attachments: [], mediaError: null };
    if (!this.api) return { attachments: [], mediaError: 'no API credentials (WECHAT_APP_ID/WECHAT_APP_SECRET) to download media' };
    const signal = AbortSignal.timeout(this.config.WECHAT_MEDIA_TIMEOUT);
    try {
      const file = await this.api.fetchMedia(want.mediaId, this.config.ATTACHMENT_MAX_BYTES, signal);
      const attachment: InboundAttachment = {
        fileName: mediaFileName(want.mediaId, want.kind, file.contentType, file.disposition, push.Format),
        mimeType: mimeFor(want.kind, file.contentType, push.Format),
        data: file.data,
      };
      return { attachments: [attachment], mediaError: null };
    } catch (err) {
      this.counters.mediaErrors++;
      const why = signal.aborted ? `download took longer than ${this.config.WECHAT_MEDIA_TIMEOUT} ms` : errorMessage(err);
      this.logger.warn({ channel: 'wechat', mediaId: want.mediaId, code: errorCode(err), why }, 'media download failed: the ticket is made without it');
      return { attachments: [], mediaError: why };
    }
  }

  async send(msg: OutboundMessage): Promise<SendResult> {
    if (msg.source.via === 'wechaty') {
      if (!this.wechaty) throw new GatewayError('CHANNEL_OFF', 'Wechaty intake is not running', { transient: true });
      return this.wechaty.send(msg);
    }
    if (!this.api) throw new GatewayError('SEND_PERMANENT', 'WECHAT_APP_ID/WECHAT_APP_SECRET not set: cannot use the customer-service API', { transient: false });
    await this.api.sendText(msg.citizen.channelUserId, msg.text);
    return { via: 'customer-service-api', upstreamId: null };
  }

  stop(): Promise<void> {
    this.stopped ??= (async () => {
      this.stopping = true;
      const grace = new Promise<void>((r) => setTimeout(r, this.config.SHUTDOWN_GRACE).unref());
      await Promise.race([Promise.allSettled([...this.inflight]), grace]);
      await this.wechaty?.stop();
    })();
    return this.stopped;
  }

  status(): Record<string, unknown> {
    return {
      officialAccount: Boolean(this.config.WECHAT_TOKEN),
      safeMode: Boolean(this.crypto),
      api: Boolean(this.api),
      stopping: this.stopping,
      ...this.counters,
      replayCache: this.replay.size,
      replayCacheEvicted: this.replay.evicted,
      ...(this.wechaty ? { wechaty: this.wechaty.status() } : {}),
    };
  }
}
