import { pino, type Logger, type DestinationStream } from 'pino';
import { redactCredentials } from './redact.js';
import { RecentErrors } from './ops/recent-errors.js';

// Phone numbers and e-mail addresses never reach the logs in clear: citizens'
// contact data is personal information, and logs travel further than the store.
// A mainland mobile number as people write it: with +86, 86 or the 0086 an international
// call dials before it, and in 3-4-4 groups split by a space or a hyphen (`138 0013 8000`).
const PHONE = /(?<!\d)(\+?86[ -]?|0086[ -]?)?(1[3-9]\d)[ -]?\d{4}[ -]?(\d{4})(?!\d)/g;
/** The same number typed in full-width digits (`１３８００１３８０００`), as a Chinese IME may leave it. */
const PHONE_FULL_WIDTH = /(?<![0-9\uff10-\uff19])((?:\uff0b?\uff18\uff16|\uff10\uff10\uff18\uff16)?\uff11[\uff13-\uff19][\uff10-\uff19])[\uff10-\uff19]{4}([\uff10-\uff19]{4})(?![0-9\uff10-\uff19])/g;
const FULL_WIDTH_DIGIT = /[\uff10-\uff19]/;
/**
 * A run of ASCII letters and digits holding a letter, or a phone number standing on its own.
 * Ids are such runs (a UUID's last group `b13812345678`, a hex digest, a base-62 key), and
 * masking eleven digits inside them hides nobody while breaking the search for that id in the
 * broker or the database. Only ASCII letters join a run: in `电话13812345678请回电` the number
 * stands on its own, whatever Unicode calls the characters around it. Written as digits, one
 * letter, then the rest, so that each run is read once (a log line may hold a long one).
 */
const TOKEN_OR_PHONE = new RegExp(`(?<![0-9A-Za-z])[0-9]*[A-Za-z][0-9A-Za-z]*|${PHONE.source}`, 'g');
const HEX = /^[0-9a-f]+$/i;

function maskPhone(cc: string | undefined, head: string, tail: string): string {
  return `${cc ?? ''}${head}****${tail}`;
}

/**
 * Inside a run of letters and digits, eleven digits are part of an id when the run has an id's
 * hex shape (a UUID's last group: twelve hex characters after `-`; a digest or hex key of at
 * least sixteen) or when letters hold them on both sides (`a13812345678f`). A word written
 * against a number (`tel13812345678`, `vx13812345678`, `phone13812345678`, also hex-looking
 * ones such as `add13812345678`) is a person's number: over-masking an odd id is cheap, a
 * number in clear is not.
 */
function maskInToken(token: string, at: number, text: string): string {
  if (HEX.test(token) && (token.length >= 16 || (token.length === 12 && text[at - 1] === '-'))) return token;
  return token.replace(PHONE, (m: string, cc: string | undefined, head: string, tail: string, at: number) =>
    at > 0 && at + m.length < token.length ? m : maskPhone(cc, head, tail),
  );
}

/**
 * ASCII and internationalised addresses alike (RFC 6531: a Unicode local part such
 * as `张三`, an IDN domain such as `例子.中国` or its `xn--` form), with `@` or the
 * full-width `＠` a Chinese keyboard types. The first character of the local part
 * stays, the rest becomes `***`; the domain stays, it names a provider, not a person.
 * Found from each `@` outwards rather than by one regex over the whole text: Chinese
 * text has no spaces, and a pattern that starts at every letter is quadratic in it.
 */
const AT = /[@\uff20]/g;
const LOCAL_CHAR = /[\p{L}\p{M}\p{N}._%+-]/u;
const DOMAIN = /^(?:[\p{L}\p{M}\p{N}-]+[.\u3002\uff0e])+(?:\p{L}{2,}|xn--[a-z0-9-]+)/iu;
/** RFC 5321 limits: 64 characters of local part, 255 of domain. */
const MAX_LOCAL = 64;
const MAX_DOMAIN = 255;

function maskEmails(text: string): string {
  let out = '';
  let done = 0;
  for (const m of text.matchAll(AT)) {
    const at = m.index;
    if (at < done) continue;
    const domain = DOMAIN.exec(text.slice(at + 1, at + 1 + MAX_DOMAIN))?.[0];
    if (!domain) continue;
    let start = at;
    while (start > done && at - start < MAX_LOCAL) {
      // Code point by code point: a local part may hold letters beyond the BMP (𠀀).
      const low = text.charCodeAt(start - 1);
      const high = start - 2 >= done ? text.charCodeAt(start - 2) : 0;
      const width = low >= 0xdc00 && low <= 0xdfff && high >= 0xd800 && high <= 0xdbff ? 2 : 1;
      if (!LOCAL_CHAR.test(text.slice(start - width, start))) break;
      start -= width;
    }
    if (start === at) continue;
    const first = String.fromCodePoint(text.codePointAt(start)!);
    out += `${text.slice(done, start)}${first}***@${domain}`;
    done = at + 1 + domain.length;
  }
  return done === 0 ? text : out + text.slice(done);
}

export function maskPII(text: string): string {
  // Addresses first: an address whose local part holds a phone number (`zhang13812345678@…`)
  // is masked as an address, so the name written around the number does not stay in clear.
  const emailsMasked = text.includes('@') || text.includes('\uff20') ? maskEmails(text) : text;
  const fullWidthMasked = FULL_WIDTH_DIGIT.test(emailsMasked) ? emailsMasked.replace(PHONE_FULL_WIDTH, '$1****$2') : emailsMasked;
  return fullWidthMasked.replace(TOKEN_OR_PHONE, (m: string, cc: string | undefined, head: string | undefined, tail: string, at: number) =>
    head === undefined ? maskInToken(m, at, fullWidthMasked) : maskPhone(cc, head, tail),
  );
}

/** What every logged string goes through: personal data masked, and credentials an error message may quote (a broker URL). */
export function maskLogText(text: string): string {
  return maskPII(redactCredentials(text));
}

/** Depth past which a logged value is not walked but replaced: masking must not stop where the walk does. */
const MAX_DEPTH = 8;

function maskDeep(value: unknown, depth = 0, seen = new WeakSet<object>()): unknown {
  if (typeof value === 'string') return maskLogText(value);
  if (value === null || typeof value !== 'object') return value;
  if (depth > MAX_DEPTH) return '[nested too deep]';
  if (seen.has(value)) return '[circular]';
  seen.add(value);
  if (value instanceof Error) {
    const out: Record<string, unknown> = { type: value.name, message: maskLogText(value.message), code: maskDeep((value as { code?: unknown }).code, depth + 1, seen) };
    // A wrapped cause often carries the text that matters (a driver's answer naming an address).
    if (value.cause !== undefined) out.cause = maskDeep(value.cause, depth + 1, seen);
    return out;
  }
  if (Array.isArray(value)) return value.map((v) => maskDeep(v, depth + 1, seen));
  if (Buffer.isBuffer(value) || value instanceof Date) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[maskLogText(k)] = maskDeep(v, depth + 1, seen);
  return out;
}

/** The recent warn/error lines of each logger made by createLogger (the operations page lists them). */
const recent = new WeakMap<Logger, RecentErrors>();

/** The recent warn/error lines written through `logger` (or its children), or null for a logger not made here. */
export function recentErrorsOf(logger: Logger): RecentErrors | null {
  return recent.get(logger) ?? null;
}

export function createLogger(level: string, destination?: DestinationStream): Logger {
  const errors = new RecentErrors();
  const logger = pino(
    {
      level,
      base: { service: 'intake-gateway' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { log: (obj) => maskDeep(obj) as Record<string, unknown> },
      hooks: {
        logMethod(args, method) {
          // Mask the message string and its interpolation arguments (`%s`, `%j`), not only the merged object.
          const masked = args.map((a, i) => (typeof a === 'string' ? maskLogText(a) : i === 0 ? a : maskDeep(a))) as Parameters<typeof method>;
          method.apply(this, masked);
        },
        // Sees each line as serialized (after the masking above) and returns it unchanged:
        // the operations page's error list is the log, not a second rendering of it.
        streamWrite(line) {
          errors.add(line);
          return line;
        },
      },
    },
    destination,
  );
  // A child's bindings never pass through `formatters.log` (pino serialises them once, at
  // child()), so they are masked here. Children inherit this `child`, so grandchildren too.
  const child = logger.child;
  logger.child = function (this: Logger, bindings, options) {
    return child.call(this, maskDeep(bindings) as typeof bindings, options);
  } as Logger['child'];
  recent.set(logger, errors);
  return logger;
}
