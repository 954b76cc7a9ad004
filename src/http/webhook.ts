import type { ErrorRequestHandler, Request, RequestHandler, Response } from 'express';
import type { Logger } from 'pino';
import { errorCode } from '../errors.js';

/**
 * Plumbing shared by the platform webhooks (WeChat, Weibo, Telegram): the
 * handler's promise is tracked so stop() can wait for it, and a failure the
 * handler did not answer itself becomes 503, which every platform reads as
 * "deliver again later" — the push was not acknowledged.
 */
export function trackedWebhook(
  channel: string,
  logger: Logger,
  inflight: Set<Promise<unknown>>,
  handle: (req: Request, res: Response) => Promise<void>,
): RequestHandler {
  return (req, res) => {
    const p = handle(req, res).catch((err: unknown) => {
      logger.error({ channel, code: errorCode(err), err }, 'webhook handling failed');
      if (!res.headersSent) res.status(503).type('text/plain').send('retry later');
    });
    inflight.add(p);
    void p.finally(() => inflight.delete(p));
  };
}

/** Body-parser failures on a webhook: 413 over the limit, 400 otherwise, as plain text (platforms ignore bodies). */
export const webhookBodyError: ErrorRequestHandler = (err, _req, res, _next) => {
  const tooLarge = (err as { status?: number }).status === 413;
  res.status(tooLarge ? 413 : 400).type('text/plain').send(tooLarge ? 'payload too large' : 'bad request');
};

/**
 * Whether a push's signed `timestamp` is within `maxSkewMs` of the gateway's clock.
 * `unitMs` is 1000 for WeChat (seconds) and 1 for Weibo (milliseconds). Only plain
 * decimal digits count: anything else is not a timestamp the platform sent.
 */
export function timestampFresh(timestamp: string, unitMs: number, now: number, maxSkewMs: number): boolean {
  if (!/^\d{1,13}$/.test(timestamp)) return false;
  return Math.abs(now - Number(timestamp) * unitMs) <= maxSkewMs;
}

/**
 * Signatures already used, for webhooks whose signature covers only
 * (secret, timestamp, nonce) and not the body (WeChat plaintext mode, Weibo):
 * without this, a captured query string signs any body until its timestamp
 * leaves the skew window.
 *
 * Keyed by the verified signature rather than by (timestamp, nonce): the
 * signature is a hash of the sorted values joined without a separator, so other
 * splits of the same digits give the same signature and must count as the same use.
 *
 * Bound: an entry lives until its timestamp is older than the skew window (after
 * that the timestamp check refuses it anyway), and at most `maxEntries` are kept;
 * when full, the oldest goes first. Only requests whose signature verified reach
 * `claim`, so only the platform itself can fill it. In memory and per instance:
 * with several instances behind a load balancer a replay that lands on another
 * instance is not caught here (the ticket dedupe still applies to retried ids).
 */
export class ReplayGuard {
  private readonly seen = new Map<string, number>();
  evicted = 0;

  constructor(
    private readonly maxSkewMs: number,
    readonly maxEntries = 100_000,
  ) {}

  /** false when `signature` was used before and is still inside the window. */
  claim(signature: string, timestampMs: number, now: number): boolean {
    const key = signature.toLowerCase();
    const until = this.seen.get(key);
    if (until !== undefined && until >= now) return false;
    this.prune(now);
    this.seen.delete(key);
    this.seen.set(key, timestampMs + this.maxSkewMs);
    return true;
  }

  /** Forget a claim whose push was not acknowledged, so the platform's redelivery is taken. */
  release(signature: string): void {
    this.seen.delete(signature.toLowerCase());
  }

  get size(): number {
    return this.seen.size;
  }

  private prune(now: number): void {
    // Entries are roughly in expiry order (insertion order, timestamps within the
    // skew): dropping expired ones from the front keeps the usual case O(1).
    for (const [k, until] of this.seen) {
      if (until >= now) break;
      this.seen.delete(k);
    }
    if (this.seen.size < this.maxEntries) return;
    for (const [k, until] of this.seen) if (until < now) this.seen.delete(k);
    while (this.seen.size >= this.maxEntries) {
      const oldest = this.seen.keys().next().value;
      if (oldest === undefined) break;
      this.seen.delete(oldest);
      this.evicted++;
    }
  }
}

/**
 * Release `signature` unless the push is acknowledged: a 5xx answer or a
 * connection closed before the answer was sent tells the platform to deliver
 * again, and it may do so with the same query string.
 */
export function releaseUnlessAcknowledged(guard: ReplayGuard, signature: string, res: Response): void {
  res.once('finish', () => {
    if (res.statusCode >= 500) guard.release(signature);
  });
  res.once('close', () => {
    if (!res.writableFinished) guard.release(signature);
  });
}
