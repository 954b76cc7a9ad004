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
