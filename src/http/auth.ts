import type { RequestHandler } from 'express';
import type { ServerResponse } from 'node:http';
import type { Config } from '../config.js';
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
    /** Set by ApiAccess.auth(): who called, in which role. */
    apiClient?: ApiClient;
  }
}

/** Contract section 5: intake clients create tickets and read their own; downstream systems read any and reply. */
export type Role = 'intake' | 'downstream';

export interface ApiClient {
  name: string;
  role: Role;
}

export function authFailed(): GatewayError {
  return new GatewayError('AUTH_FAILED', 'missing or invalid API key');
}

/**
 * Token bucket per key: `ratePerSecond` sustained, the same as burst. Callers pass
 * authenticated client names only, so the map is bounded by the configured keys.
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

/**
 * The API keys of both roles and one rate limiter for all of them: a client's
 * budget is shared by every authenticated route it calls (app API, ticket reads,
 * replies, attachments, Open311), so spreading requests over routes gains nothing.
 * Client names are unique across roles (config refuses a name in both), so the
 * bucket is per client. One instance per gateway.
 */
export class ApiAccess {
  private readonly lookupKey: (k: string | undefined) => string | null;
  private readonly roles = new Map<string, Role>();
  private readonly limit: (id: string) => number | null;

  constructor(config: Pick<Config, 'APP_API_KEYS' | 'DOWNSTREAM_API_KEYS' | 'APP_RATE_LIMIT'>, now: () => number) {
    this.lookupKey = keyLookup(new Map([...config.APP_API_KEYS, ...config.DOWNSTREAM_API_KEYS]));
    for (const name of config.APP_API_KEYS.values()) this.roles.set(name, 'intake');
    for (const name of config.DOWNSTREAM_API_KEYS.values()) this.roles.set(name, 'downstream');
    // Only names from the configuration reach the limiter (wait() takes an identified
    // client), so its map cannot grow past them whatever keys are presented.
    this.limit = rateLimiter(config.APP_RATE_LIMIT, now);
  }

  /** The client a presented key belongs to, or null. */
  identify(key: string | undefined): ApiClient | null {
    const name = this.lookupKey(key);
    const role = name === null ? undefined : this.roles.get(name);
    return name !== null && role ? { name, role } : null;
  }

  /** The client named by an `Authorization: Bearer <key>` header, or null. */
  fromBearer(authorization: string | undefined): ApiClient | null {
    return this.identify(authorization && authorization.startsWith('Bearer ') ? authorization.slice(7).trim() : undefined);
  }

  /** Seconds to wait when `client` is over APP_RATE_LIMIT, else null (and one request is counted). */
  wait(client: ApiClient): number | null {
    return this.limit(client.name);
  }

  /** Counts a request; over the rate: sets Retry-After and throws RATE_LIMITED. */
  checkRate(client: ApiClient, res: ServerResponse): void {
    const wait = this.wait(client);
    if (wait !== null) {
      res.setHeader('Retry-After', String(wait));
      throw new GatewayError('RATE_LIMITED', 'too many requests for this API key');
    }
  }

  /** `Authorization: Bearer <key>` (401 otherwise), then the rate (429); sets req.apiClient. */
  auth(): RequestHandler {
    return (req, res, next) => {
      const client = this.fromBearer(req.headers.authorization);
      if (!client) return next(authFailed());
      try {
        this.checkRate(client, res);
      } catch (err) {
        return next(err);
      }
      req.apiClient = client;
      next();
    };
  }
}

export function forbidden(what: string): GatewayError {
  return new GatewayError('FORBIDDEN', `this API key may not ${what}`);
}
