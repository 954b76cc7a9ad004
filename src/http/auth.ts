import type { RequestHandler } from 'express';
import { timingSafeEqual } from 'node:crypto';
import { GatewayError } from '../errors.js';

/** Finds the client name for an API key without leaking key contents through timing. */
export function keyLookup(keys: Map<string, string>): (presented: string | undefined) => string | null {
  const entries = [...keys.entries()].map(([k, name]) => ({ key: Buffer.from(k), name }));
  const direct = new Map(keys);
  return (presented) => {
    if (!presented) return null;
    // Map lookup is the fast path; the constant-time compare guards against a hash-timing oracle on near misses.
    const name = direct.get(presented);
    if (name === undefined) return null;
    const p = Buffer.from(presented);
    const e = entries.find((x) => x.key.length === p.length && timingSafeEqual(x.key, p));
    return e ? e.name : null;
  };
}

declare module 'express-serve-static-core' {
  interface Request {
    client?: string;
  }
}

/** The client named by an `Authorization: Bearer <key>` header, or null. */
export function bearerClient(lookup: (k: string | undefined) => string | null, authorization: string | undefined): string | null {
  return lookup(authorization && authorization.startsWith('Bearer ') ? authorization.slice(7).trim() : undefined);
}

export function authFailed(): GatewayError {
  return new GatewayError('AUTH_FAILED', 'missing or invalid API key');
}

/** `Authorization: Bearer <key>` for the app API; 401 otherwise. */
export function bearerAuth(lookup: (k: string | undefined) => string | null): RequestHandler {
  return (req, _res, next) => {
    const client = bearerClient(lookup, req.headers.authorization);
    if (!client) return next(authFailed());
    req.client = client;
    next();
  };
}

/**
 * Token bucket per key: `ratePerSecond` sustained, the same as burst. Buckets
 * are kept for known keys only, so the map is bounded by the configured keys.
 */
export function rateLimiter(ratePerSecond: number, now: () => number = Date.now) {
  const buckets = new Map<string, { tokens: number; at: number }>();
  return (id: string): number | null => {
    const t = now();
    const b = buckets.get(id) ?? { tokens: ratePerSecond, at: t };
    b.tokens = Math.min(ratePerSecond, b.tokens + ((t - b.at) / 1000) * ratePerSecond);
    b.at = t;
    buckets.set(id, b);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return null;
    }
    return Math.max(1, Math.ceil((1 - b.tokens) / ratePerSecond));
  };
}
