import { createHash, timingSafeEqual } from 'node:crypto';

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();
/** Compared against when the name is unknown, so an unknown name costs what a wrong password does. */
const NOBODY = digest('\u0000no such operator\u0000');

/**
 * HTTP basic auth against OPS_USERS (name → password). Passwords are compared as
 * SHA-256 digests with timingSafeEqual: equal length always, so neither the
 * content nor the length of a stored password leaks through timing. Returns the
 * operator's name, or null.
 */
export function basicAuth(users: Map<string, string>): (authorization: string | undefined) => string | null {
  const stored = new Map([...users].map(([name, password]) => [name, digest(password)]));
  return (authorization) => {
    if (!authorization || !/^Basic\s+/i.test(authorization)) return null;
    const decoded = Buffer.from(authorization.replace(/^Basic\s+/i, '').trim(), 'base64').toString('utf8');
    const i = decoded.indexOf(':');
    if (i <= 0) return null;
    const name = decoded.slice(0, i);
    const expected = stored.get(name);
    const ok = timingSafeEqual(digest(decoded.slice(i + 1)), expected ?? NOBODY);
    return ok && expected !== undefined ? name : null;
  };
}
