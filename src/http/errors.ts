import type { ErrorRequestHandler, Response } from 'express';
import { ZodError } from 'zod';
import type { Logger } from 'pino';
import { GatewayError } from '../errors.js';
import type { Metrics } from '../metrics.js';

const STATUS: Record<string, number> = {
  INPUT_INVALID: 400,
  AUTH_FAILED: 401,
  NOT_FOUND: 404,
  INPUT_TOO_LARGE: 413,
  INPUT_UNSUPPORTED: 415,
  RATE_LIMITED: 429,
  STORE_UNAVAILABLE: 503,
  STORE_CLOSED: 503,
  SHUTTING_DOWN: 503,
  CHANNEL_OFF: 404,
};

export interface ErrorBody {
  error: { code: string; message: string; issues: { path: string; message: string }[] };
}

export function sendError(res: Response, status: number, code: string, message: string, issues: ErrorBody['error']['issues'] = []): void {
  if (res.headersSent) return;
  res.status(status).json({ error: { code, message, issues } } satisfies ErrorBody);
}

export function zodIssues(err: ZodError): ErrorBody['error']['issues'] {
  return err.issues.map((i) => ({ path: i.path.join('.'), message: i.message }));
}

/**
 * The one place HTTP errors are answered: a code and a message, never a stack
 * trace or an internal detail. Body-parser errors carry `type`; ours carry `code`.
 */
export function errorHandler(logger: Logger, metrics: Metrics): ErrorRequestHandler {
  return (err, _req, res, _next) => {
    const e = err as { type?: string; status?: number; message?: string };
    let status = 500;
    let code = 'INTERNAL';
    let message = 'internal error';
    let issues: ErrorBody['error']['issues'] = [];
    if (err instanceof ZodError) {
      status = 400;
      code = 'INPUT_INVALID';
      message = 'request does not match the schema';
      issues = zodIssues(err);
    } else if (err instanceof GatewayError) {
      status = STATUS[err.code] ?? (err.transient ? 503 : 500);
      code = err.code;
      message = status === 500 ? 'internal error' : err.message;
      if (err.code === 'RATE_LIMITED' || err.transient) res.setHeader('Retry-After', '1');
    } else if (e.type === 'entity.too.large') {
      status = 413;
      code = 'INPUT_TOO_LARGE';
      message = 'request body is too large';
    } else if (e.type === 'entity.parse.failed') {
      status = 400;
      code = 'INPUT_INVALID';
      message = 'body is not valid JSON';
    } else if (e.type === 'encoding.unsupported' || e.type === 'charset.unsupported') {
      status = 415;
      code = 'INPUT_UNSUPPORTED';
      message = e.message ?? 'unsupported encoding';
    } else if (typeof e.status === 'number' && e.status >= 400 && e.status < 500) {
      status = e.status;
      code = 'INPUT_INVALID';
      message = 'bad request';
    }
    if (status >= 500) logger.error({ err }, 'request failed');
    else metrics.httpRejected.inc({ code });
    sendError(res, status, code, message, issues);
  };
}
