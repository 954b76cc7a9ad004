import type { ErrorRequestHandler, Response } from 'express';
import { ZodError } from 'zod';
import type { Logger } from 'pino';
import { GatewayError } from '../errors.js';
import type { Metrics } from '../metrics.js';

const STATUS: Record<string, number> = {
  INPUT_INVALID: 400,
  AUTH_FAILED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  INPUT_TOO_LARGE: 413,
  INPUT_UNSUPPORTED: 415,
  RATE_LIMITED: 429,
  // A ticket's reply cap is permanent for that ticket: 429 (as the contract says) but no Retry-After.
  REPLY_LIMIT: 429,
  STORE_UNAVAILABLE: 503,
  STORE_CLOSED: 503,
  SHUTTING_DOWN: 503,
  CHANNEL_OFF: 404,
};

/** Messages of the JSON body checks, the same whether Express or the fast path reads the body. */
export const BODY_NOT_JSON_TYPE = 'expected Content-Type: application/json';
export const BODY_TOO_LARGE = 'request body is too large';
export const BODY_NOT_JSON = 'body is not valid JSON';

export interface ErrorBody {
  error: { code: string; message: string; issues: { path: string; message: string }[] };
}

/** How an error is answered over HTTP. `retry`: the answer carries `Retry-After` (1 s unless the route set its own). */
export interface HttpFailure {
  status: number;
  code: string;
  message: string;
  issues: ErrorBody['error']['issues'];
  retry: boolean;
}

export function errorBody(code: string, message: string, issues: ErrorBody['error']['issues'] = []): ErrorBody {
  return { error: { code, message, issues } };
}

export function sendError(res: Response, status: number, code: string, message: string, issues: ErrorBody['error']['issues'] = []): void {
  if (res.headersSent) return;
  res.status(status).json(errorBody(code, message, issues));
}

export function zodIssues(err: ZodError): ErrorBody['error']['issues'] {
  return err.issues.map((i) => ({ path: i.path.join('.'), message: i.message }));
}

/**
 * A code and a message for any error, never a stack trace or an internal detail.
 * Body-parser errors carry `type`; ours carry `code`.
 */
export function describeError(err: unknown): HttpFailure {
  const f: HttpFailure = { status: 500, code: 'INTERNAL', message: 'internal error', issues: [], retry: false };
  const e = (err ?? {}) as { type?: string; status?: number; message?: string };
  if (err instanceof ZodError) {
    f.status = 400;
    f.code = 'INPUT_INVALID';
    f.message = 'request does not match the schema';
    f.issues = zodIssues(err);
  } else if (err instanceof GatewayError) {
    f.status = STATUS[err.code] ?? (err.transient ? 503 : 500);
    f.code = err.code;
    f.message = f.status === 500 ? 'internal error' : err.message;
    f.retry = err.code === 'RATE_LIMITED' || err.transient;
  } else if (e.type === 'entity.too.large') {
    f.status = 413;
    f.code = 'INPUT_TOO_LARGE';
    f.message = BODY_TOO_LARGE;
  } else if (e.type === 'entity.parse.failed') {
    f.status = 400;
    f.code = 'INPUT_INVALID';
    f.message = BODY_NOT_JSON;
  } else if (e.type === 'encoding.unsupported' || e.type === 'charset.unsupported') {
    f.status = 415;
    f.code = 'INPUT_UNSUPPORTED';
    f.message = e.message ?? 'unsupported encoding';
  } else if (typeof e.status === 'number' && e.status >= 400 && e.status < 500) {
    f.status = e.status;
    f.code = 'INPUT_INVALID';
    f.message = 'bad request';
  }
  return f;
}

/** 5xx are logged (they need an operator), 4xx counted by code. */
export function noteFailure(f: HttpFailure, err: unknown, logger: Logger, metrics: Metrics): void {
  if (f.status >= 500) logger.error({ err }, 'request failed');
  else metrics.httpRejected.inc({ code: f.code });
}

/** The one place Express routes' errors are answered; the fast path answers with the same `describeError`. */
export function errorHandler(logger: Logger, metrics: Metrics): ErrorRequestHandler {
  return (err, _req, res, _next) => {
    const f = describeError(err);
    // A rate limiter has already said how long to wait.
    if (f.retry && !res.hasHeader('Retry-After')) res.setHeader('Retry-After', '1');
    noteFailure(f, err, logger, metrics);
    sendError(res, f.status, f.code, f.message, f.issues);
  };
}
