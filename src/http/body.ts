import express, { type RequestHandler } from 'express';
import { GatewayError } from '../errors.js';
import { BODY_NOT_JSON_TYPE } from './errors.js';

declare module 'express-serve-static-core' {
  interface Request {
    rawBody?: Buffer;
  }
}

/**
 * JSON bodies for API routes: 415 unless the request says JSON, 413 over the
 * limit, 400 when it does not parse; the raw bytes are kept for the journal.
 */
export function jsonBody(limit: number): RequestHandler[] {
  return [
    (req, _res, next) => {
      if (!req.is('application/json')) return next(new GatewayError('INPUT_UNSUPPORTED', BODY_NOT_JSON_TYPE));
      next();
    },
    express.json({
      limit,
      verify: (req, _res, buf) => {
        (req as express.Request).rawBody = buf;
      },
    }),
  ];
}
