import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Look-up codes, CSRF tokens and the per-IP rate limit of the web form. The
 * look-up code is an HMAC of the ticket id, so nothing extra is stored: whoever
 * has the number and the code may read the ticket's status.
 */

// 31 symbols without look-alikes (0/O, 1/I/L): 8 of them carry about 40 bits.
const ALPHABET = 'ABCDEFGHJKMNPQRSTUVWXYZ23456789';
const CODE_LENGTH = 8;

export function lookupCode(secret: string, ticketId: string): string {
  const mac = createHmac('sha256', secret).update(`lookup:${ticketId}`).digest();
  let out = '';
  for (let i = 0; i < CODE_LENGTH; i++) out += ALPHABET[mac[i]! % ALPHABET.length];
  return out;
}

/** `abcd-efgh`, `ABCD EFGH` and `ABCDEFGH` are the same code. */
export function normalizeCode(code: string): string {
  return code.toUpperCase().replace(/[\s-]/g, '');
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export function checkLookupCode(secret: string, ticketId: string, code: string): boolean {
  return safeEqual(lookupCode(secret, ticketId), normalizeCode(code));
}

export function newSecret(): string {
  return randomBytes(32).toString('base64url');
}

export function newNonce(): string {
  return randomBytes(16).toString('base64url');
}

// Signed double-submit CSRF: a random value in an HttpOnly SameSite cookie and
// its HMAC in a hidden field. Another site can make the browser send the cookie
// but can neither read it nor compute the field.
export const CSRF_COOKIE = 'mbx_csrf';

export function csrfToken(secret: string, cookieValue: string): string {
  return createHmac('sha256', secret).update(`csrf:${cookieValue}`).digest('base64url');
}

export function checkCsrf(secret: string, cookieValue: string | undefined, token: string | undefined): boolean {
  if (!cookieValue || !token || !/^[A-Za-z0-9_-]{16,64}$/.test(cookieValue)) return false;
  return safeEqual(csrfToken(secret, cookieValue), token);
}

export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}

/**
 * Fixed one-minute windows per key (IP), with a bounded number of keys: when
 * full, expired windows are dropped first, then the oldest.
 */
export class RateLimiter {
  private readonly windows = new Map<string, { start: number; count: number }>();

  constructor(
    private readonly limit: number,
    private readonly windowMs = 60_000,
    private readonly maxKeys = 10_000,
  ) {}

  /** null when allowed, else the seconds to wait (for Retry-After). */
  hit(key: string, now: number): number | null {
    let w = this.windows.get(key);
    if (!w || now - w.start >= this.windowMs) {
      if (w) this.windows.delete(key);
      this.evict(now);
      w = { start: now, count: 0 };
      this.windows.set(key, w);
    }
    if (w.count >= this.limit) return Math.max(1, Math.ceil((w.start + this.windowMs - now) / 1000));
    w.count += 1;
    return null;
  }

  private evict(now: number): void {
    if (this.windows.size < this.maxKeys) return;
    for (const [k, w] of this.windows) if (now - w.start >= this.windowMs) this.windows.delete(k);
    while (this.windows.size >= this.maxKeys) {
      const oldest = this.windows.keys().next().value;
      if (oldest === undefined) break;
      this.windows.delete(oldest);
    }
  }

  get size(): number {
    return this.windows.size;
  }
}
