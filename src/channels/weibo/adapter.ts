import express, { type NextFunction, type Request, type Response } from 'express';
import type { Logger } from 'pino';
import type { Config } from '../../config.js';
import { ReplayGuard, releaseUnlessAcknowledged, timestampFresh, trackedWebhook, webhookBodyError } from '../../http/webhook.js';
import { GatewayError, errorCode, errorMessage, isTransient } from '../../errors.js';
import type { AdapterContext, ChannelAdapter, OutboundMessage, SendResult } from '../types.js';
import { classify, isTransientWeiboError, parsePush, replyForm, toInbound, verifyWeiboSignature, type WeiboPush } from './parse.js';

/**
 * Weibo fans-service platform (粉丝服务平台): URL verification, JSON message push,
 * receipts and replies through the customer-service reply API. Receipts are
 * `active`: the push is answered at once with an empty body (which stops Weibo's
 * retries) after the ticket is durable, and the core sends the receipt through
 * `send`.
 */
export function createWeiboAdapter(config: Config, logger: Logger): ChannelAdapter | null {
  return new WeiboAdapter(config, logger);
}

function query(req: Request): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.query)) if (typeof v === 'string') out[k] = v;
  return out;
}

class WeiboAdapter implements ChannelAdapter {
  readonly channel = 'weibo' as const;
  readonly receiptMode = 'active' as const;
  private ctx: AdapterContext | null = null;
  private stopping = false;
  private stopped: Promise<void> | null = null;
  private readonly inflight = new Set<Promise<unknown>>();
  private counters = { pushes: 0, tickets: 0, badSignature: 0 };
  private readonly replyUrl: string;
  /** Signatures already used: Weibo's covers (App Secret, timestamp, nonce), not the body. */
  private readonly replay: ReplayGuard;

  constructor(
    private readonly config: Config,
    private readonly logger: Logger,
  ) {
    this.replyUrl = `${config.WEIBO_API_URL.replace(/\/+$/, '')}/2/messages/reply.json`;
    this.replay = new ReplayGuard(config.WEBHOOK_MAX_SKEW);
  }

  async start(ctx: AdapterContext): Promise<void> {
    this.ctx = ctx;
    // Raw text, never a JSON body parser: int64 ids must be read from the text itself.
    const body = express.text({ type: () => true, limit: this.config.HTTP_JSON_LIMIT, defaultCharset: 'utf-8' });
    ctx.http.get('/weibo', (req, res) => this.verify(req, res));
    ctx.http.post(
      '/weibo',
      (req: Request, res: Response, next: NextFunction) => this.beforeBody(req, res, next),
      body,
      trackedWebhook('weibo', this.logger, this.inflight, (req, res) => this.onPush(req, res)),
      webhookBodyError,
    );
    if (!this.config.WEIBO_ACCESS_TOKEN) this.logger.warn({ channel: 'weibo' }, 'WEIBO_ACCESS_TOKEN not set: receipts and replies cannot be sent');
    this.logger.info({ channel: 'weibo' }, 'Weibo fans-service push listening on /weibo');
  }

  private verify(req: Request, res: Response): void {
    const q = query(req);
    if (typeof q.echostr !== 'string') {
      res.status(400).type('text/plain').send('missing echostr');
      return;
    }
    if (!verifyWeiboSignature(this.config.WEIBO_APP_SECRET!, q)) return this.unauthorized(req, res, 'verification');
    res.status(200).type('text/plain').send(q.echostr);
  }

  /**
   * The signature covers (App Secret, timestamp, nonce) only, never the body, so it
   * is checked with the timestamp (milliseconds, within WEBHOOK_MAX_SKEW) and
   * refused when used before (ReplayGuard), all before the body is read or parsed:
   * otherwise one captured query string would sign any body.
   */
  private beforeBody(req: Request, res: Response, next: NextFunction): void {
    const q = query(req);
    if (!verifyWeiboSignature(this.config.WEIBO_APP_SECRET!, q)) return this.unauthorized(req, res, 'push');
    // Routes are mounted in start(), so ctx is set.
    const now = this.ctx!.clock.now();
    if (!timestampFresh(q.timestamp!, 1, now, this.config.WEBHOOK_MAX_SKEW)) return this.unauthorized(req, res, 'timestamp outside WEBHOOK_MAX_SKEW');
    if (!this.replay.claim(q.signature!, Number(q.timestamp), now)) return this.unauthorized(req, res, 'signature used before');
    releaseUnlessAcknowledged(this.replay, q.signature!, res);
    next();
  }

  private unauthorized(req: Request, res: Response, what: string): void {
    this.counters.badSignature++;
    // Logged without the body: unauthenticated input.
    this.logger.warn({ channel: 'weibo', ip: req.ip, path: req.path, what, signed: typeof req.query.signature === 'string' }, 'request refused: not authenticated');
    res.status(401).type('text/plain').send('invalid signature');
  }

  /** An empty 200 body is what stops Weibo's retries (same rule as WeChat's). */
  private ok(res: Response): void {
    res.status(200).type('text/plain').send('');
  }

  private async onPush(req: Request, res: Response): Promise<void> {
    if (this.stopping || !this.ctx) {
      res.status(503).type('text/plain').send('shutting down');
      return;
    }
    this.counters.pushes++;
    const intake = this.ctx.intake;
    const raw = typeof req.body === 'string' ? req.body : Buffer.isBuffer(req.body) ? req.body.toString('utf8') : '';
    let push: WeiboPush;
    try {
      push = parsePush(raw);
    } catch (err) {
      await this.reject(res, 'parse_error', errorMessage(err), raw);
      return;
    }
    const kind = classify(push);
    if (kind.kind === 'event') {
      this.logger.info({ channel: 'weibo', subtype: kind.subtype, user: push.sender_id }, 'event received');
      this.ok(res);
      return;
    }
    if (kind.kind === 'unsupported') {
      // "当出现未知类型时可忽略此消息": ignored upstream, but recorded for operators.
      await this.reject(res, 'unsupported_type', `type ${kind.type} is not supported`, raw);
      return;
    }
    try {
      const result = await intake.accept(toInbound(push, raw));
      if (result.status !== 'rejected' && result.status !== 'query') this.counters.tickets++;
    } catch (err) {
      if (isTransient(err)) {
        this.logger.error({ channel: 'weibo', code: errorCode(err) }, 'cannot store the message: asking Weibo to retry');
        res.status(503).type('text/plain').send('retry later');
        return;
      }
      await this.reject(res, 'invalid', errorMessage(err), raw);
      return;
    }
    this.ok(res);
  }

  /** A failure to record goes to trackedWebhook, which answers 503 so Weibo delivers again. */
  private async reject(res: Response, reason: string, detail: string, raw: string): Promise<void> {
    await this.ctx!.intake.reject({ channel: 'weibo', reason, detail, raw });
    this.ok(res);
  }

  async send(msg: OutboundMessage): Promise<SendResult> {
    const token = this.config.WEIBO_ACCESS_TOKEN;
    if (!token) throw new GatewayError('SEND_PERMANENT', 'WEIBO_ACCESS_TOKEN is not set', { transient: false });
    const receiverId = msg.citizen.channelUserId;
    if (!/^\d+$/.test(receiverId)) throw new GatewayError('SEND_PERMANENT', `not a Weibo uid: ${receiverId}`, { transient: false });
    let res: globalThis.Response;
    try {
      res = await fetch(this.replyUrl, {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded; charset=utf-8' },
        body: replyForm({ accessToken: token, receiverId, text: msg.text }),
        signal: AbortSignal.timeout(15_000),
      });
    } catch (err) {
      throw new GatewayError('SEND_TRANSIENT', `Weibo reply API unreachable: ${errorMessage(err)}`, { transient: true, cause: err });
    }
    const text = await res.text().catch(() => '');
    let body: Record<string, unknown> | null = null;
    try {
      body = JSON.parse(text) as Record<string, unknown>;
    } catch {
      body = null;
    }
    const errorCodeValue = body && typeof body.error_code === 'number' ? body.error_code : null;
    if (res.ok && body && errorCodeValue === null && body.result !== false) {
      return { via: 'reply-api', upstreamId: null };
    }
    const transient = isTransientWeiboError(res.status, errorCodeValue);
    throw new GatewayError(transient ? 'SEND_TRANSIENT' : 'SEND_PERMANENT', `Weibo reply API refused: ${String(body?.error ?? `HTTP ${res.status}`)}`, {
      transient,
      detail: { status: res.status, error_code: errorCodeValue, error: body?.error ?? null, body: body ?? text.slice(0, 1000) },
    });
  }

  stop(): Promise<void> {
    this.stopped ??= (async () => {
      this.stopping = true;
      const grace = new Promise<void>((r) => setTimeout(r, this.config.SHUTDOWN_GRACE).unref());
      await Promise.race([Promise.allSettled([...this.inflight]), grace]);
    })();
    return this.stopped;
  }

  status(): Record<string, unknown> {
    return {
      replies: Boolean(this.config.WEIBO_ACCESS_TOKEN),
      stopping: this.stopping,
      ...this.counters,
      replayCache: this.replay.size,
      replayCacheEvicted: this.replay.evicted,
    };
  }
}
