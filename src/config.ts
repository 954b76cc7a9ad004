import { readFileSync, existsSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { GatewayError } from './errors.js';
import { redactCredentials, redactValues } from './redact.js';
import { boolean, duration, optionalString, optionalUrl, port, positiveInt } from './config-types.js';
import { smsConfig } from './channels/sms/config.js';
import { mailboxConfig } from './channels/mailbox/config.js';
import { wechatConfig } from './channels/wechat/config.js';
import { weiboConfig } from './channels/weibo/config.js';
import { telegramConfig } from './channels/telegram/config.js';

/** `name:key,name:key` → Map key → client name. A name may have several keys (rotation). */
function apiKeys() {
  return z
    .string()
    .default('')
    .transform((v, ctx) => {
      const keys = new Map<string, string>();
      for (const pair of v.split(',').map((p) => p.trim()).filter(Boolean)) {
        const i = pair.indexOf(':');
        if (i <= 0 || i === pair.length - 1) {
          ctx.addIssue({ code: 'custom', message: 'expected comma-separated name:key pairs' });
          return z.NEVER;
        }
        keys.set(pair.slice(i + 1), pair.slice(0, i));
      }
      return keys; // key → client name
    });
}

/**
 * `name:password,name:password` → Map name → password: the people who may open the
 * operations page (HTTP basic auth). A password may contain `:`; a name may not.
 * Short passwords are refused: the page is reachable wherever the gateway is.
 */
function opsUsers() {
  return z
    .string()
    .default('')
    .transform((v, ctx) => {
      const users = new Map<string, string>();
      for (const pair of v.split(',').map((p) => p.trim()).filter(Boolean)) {
        const i = pair.indexOf(':');
        if (i <= 0 || pair.length - i - 1 < 8) {
          ctx.addIssue({ code: 'custom', message: 'expected comma-separated name:password pairs, passwords of 8 characters or more' });
          return z.NEVER;
        }
        const name = pair.slice(0, i);
        if (users.has(name)) {
          ctx.addIssue({ code: 'custom', message: `user ${name} is listed twice` });
          return z.NEVER;
        }
        users.set(name, pair.slice(i + 1));
      }
      return users; // name → password
    });
}

const PROXY_NAMES = new Set(['loopback', 'linklocal', 'uniquelocal']);

/** An address or `address/prefix` as proxy-addr (behind Express's `trust proxy`) reads it. */
function isAddressOrCidr(item: string): boolean {
  const [addr, prefix, ...rest] = item.split('/');
  if (rest.length || !addr) return false;
  const family = isIP(addr);
  if (!family) return false;
  if (prefix === undefined) return true;
  return /^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128);
}

/**
 * Comma-separated IPs, CIDRs and the names `loopback`, `linklocal`, `uniquelocal`.
 * Checked here rather than left to Express, which would only fail at the first request.
 */
const trustedProxies = () =>
  z.string().transform((v, ctx) => {
    const items = v.split(',').map((p) => p.trim()).filter(Boolean);
    for (const item of items) {
      if (!PROXY_NAMES.has(item) && !isAddressOrCidr(item)) {
        ctx.addIssue({ code: 'custom', message: `${JSON.stringify(item)} is not an IP, a CIDR or one of loopback, linklocal, uniquelocal` });
        return z.NEVER;
      }
    }
    return items;
  });

/**
 * Configuration has one name per setting, the same in `config/default.json`, in the
 * file named by GATEWAY_CONFIG and in the environment (later wins). It is parsed
 * once, here; the rest of the code receives the typed object.
 */
const coreConfig = {
  /** One URL, or the comma-separated URLs of a RabbitMQ cluster's nodes (tried in order). */
  AMQP_URL: z.string().refine((v) => v.split(',').every((u) => /^amqps?:\/\//.test(u.trim())), 'expected an amqp:// or amqps:// URL, or several separated by commas'),
  HTTP_PORT: port(),
  HTTP_HOST: z.string().min(1),
  DATA_DIR: z.string().min(1),
  /** `postgres://…` shared store for several instances; absent = SQLite in DATA_DIR. */
  DATABASE_URL: optionalUrl('postgres', 'postgresql'),
  DEADLINE_MESSAGE: duration(),
  DEADLINE_MAILBOX: duration(),
  DEADLINE_WARNING_RATIO: z.coerce.number().gt(0).lt(1),
  /** Local time zone of the hotline: ticket numbers count per local day. */
  TIMEZONE: z.string().refine((tz) => {
    try {
      new Intl.DateTimeFormat('en', { timeZone: tz });
      return true;
    } catch {
      return false;
    }
  }, 'expected an IANA time zone such as Asia/Shanghai'),
  /** `name:key,name:key`: intake clients (the app, Open311 clients) — create tickets, read their own. */
  APP_API_KEYS: apiKeys(),
  /** `name:key,name:key`: downstream systems (case handling, operators) — read any ticket, post replies. */
  DOWNSTREAM_API_KEYS: apiKeys(),
  /** Requests per second per API key, on every authenticated route. */
  APP_RATE_LIMIT: positiveInt(),
  /** Replies one ticket takes at most; more answer 429 (HTTP) or `reply.failed` (queue). */
  REPLY_MAX_PER_TICKET: positiveInt(),
  HTTP_BODY_LIMIT: positiveInt(),
  HTTP_JSON_LIMIT: positiveInt(),
  /**
   * How long an idle keep-alive connection stays open. The side that closes an idle
   * connection first races the other's next request on it (ECONNRESET); a proxy in front
   * (nginx, a cloud load balancer: 60 s) must be the one that closes, so this is longer.
   */
  HTTP_KEEPALIVE_TIMEOUT: duration(),
  /**
   * Peers whose `X-Forwarded-For` is believed (Express's `trust proxy` list); the
   * client address that results keys the per-IP limits. Empty = believe no one.
   */
  TRUST_PROXY: trustedProxies(),
  /**
   * WeChat and Weibo pushes whose signed `timestamp` is further than this from the
   * gateway's clock are refused: their signatures do not expire by themselves.
   */
  WEBHOOK_MAX_SKEW: duration(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
  /** SQLite synchronous mode: `full` survives power loss, `normal` survives process crashes only. */
  STORE_SYNC: z.enum(['full', 'normal']),
  /** Unconfirmed publishes in flight at most. */
  PUBLISH_WINDOW: positiveInt(),
  /**
   * While publishes await their confirm, new rows wait up to this long (or until
   * PUBLISH_BATCH are ready) to go out together; 0 publishes every commit at once.
   */
  PUBLISH_LINGER: duration(),
  /** Ready rows that are published at once, without lingering. */
  PUBLISH_BATCH: positiveInt(),
  /** Outbox depth above which channels pause reading upstream (SMPP, IMAP) and /readyz says so. */
  OUTBOX_HIGH_WATER: positiveInt(),
  /** A message not acked this long after its first publish (unanswered, or nacked on every retry): the broker link is dropped and everything unconfirmed goes out again on a new one. */
  PUBLISH_CONFIRM_TIMEOUT: duration(),
  /** Longest wait between broker reconnect attempts. */
  AMQP_RECONNECT_MAX: duration(),
  /** An earlier ticket of the same citizen within this window, on the same matter, makes a new one `repeatOf` it. */
  REPEAT_WINDOW: duration(),
  /** Outgoing replies and receipts: attempts before `reply.failed`. */
  SEND_MAX_ATTEMPTS: positiveInt(),
  /** Largest attachment kept, bytes. */
  ATTACHMENT_MAX_BYTES: positiveInt(),
  /** Time the shutdown path gives in-flight work before it closes anyway. */
  SHUTDOWN_GRACE: duration(),
  /** Receipt text; `{number}` and `{deadline}` are filled in. */
  RECEIPT_TEMPLATE_ZH: z.string().min(1),
  RECEIPT_TEMPLATE_EN: z.string().min(1),
  /** Answer to a message with no content and no attachment. */
  EMPTY_NOTICE_ZH: z.string().min(1),
  /** Public base URL of the gateway, used in links sent to citizens; empty = relative. */
  PUBLIC_URL: optionalString(),
  /** Classification rules (categories, emergencies, out of scope); empty = config/rules.json. */
  RULES_FILE: optionalString(),
  /** Serve Prometheus metrics on /metrics. */
  METRICS: boolean(),
  /** `name:password,…`: who may open the operations page `/ops` (basic auth); empty = the page is off (404). */
  OPS_USERS: opsUsers(),
  /** Live streams (`/ops/events`) open at once, all viewers together; more answer 503. */
  OPS_MAX_STREAMS: positiveInt(),
};

export const ConfigSchema = z
  .object({
    ...coreConfig,
    ...smsConfig,
    ...mailboxConfig,
    ...wechatConfig,
    ...weiboConfig,
    ...telegramConfig,
  })
  .superRefine((c, ctx) => {
    // A key identifies one client in one role. A key in both lists would get whichever role
    // was looked up first; a name in both would let a downstream system and an intake client
    // share a rate bucket and, worse, the ownership of tickets (tickets record the creating
    // client's name). Either is a configuration mistake, so start-up stops.
    const appNames = new Set(c.APP_API_KEYS.values());
    for (const [key, name] of c.DOWNSTREAM_API_KEYS) {
      if (c.APP_API_KEYS.has(key)) {
        ctx.addIssue({ code: 'custom', path: ['DOWNSTREAM_API_KEYS'], message: `the key of ${name} is also in APP_API_KEYS; a key has one role` });
      } else if (appNames.has(name)) {
        ctx.addIssue({ code: 'custom', path: ['DOWNSTREAM_API_KEYS'], message: `client name ${name} is also in APP_API_KEYS; a client has one role` });
      }
    }
  });
export type Config = z.infer<typeof ConfigSchema>;
export type ConfigInput = Partial<Record<keyof z.input<typeof ConfigSchema>, unknown>>;

export const CONFIG_KEYS = Object.keys(ConfigSchema.shape) as (keyof Config)[];

/**
 * Settings whose values never appear in logs or error messages: tokens, secrets,
 * keys and passwords, by name, so that a setting added later is covered too.
 */
const SECRET = /TOKEN|SECRET|KEY|PASSWORD/;
export function isSecretKey(key: string): boolean {
  return SECRET.test(key);
}
/** `name:key,name:key` lists (APP_API_KEYS, DOWNSTREAM_API_KEYS): the names say which client, the keys are secrets. */
const KEY_LIST = /API_KEYS$|^OPS_USERS$/;
/** Parsed as name → password (the other key lists are key → name). */
const USER_LIST = /^OPS_USERS$/;

function keyListNames(value: string): string {
  return value
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)
    .map((p) => (p.indexOf(':') > 0 ? `${p.slice(0, p.indexOf(':'))}:***` : '***'))
    .join(',');
}

/** A setting's value as it may be shown: key lists by client name, secrets as `***`, credentials in URLs hidden. */
function shownValue(key: string, value: unknown): unknown {
  if (KEY_LIST.test(key) && typeof value === 'string') return keyListNames(value);
  if (USER_LIST.test(key) && value instanceof Map) return [...value.keys()].map((name) => `${String(name)}:***`).join(',');
  if (KEY_LIST.test(key) && value instanceof Map) return [...value.values()].map((name) => `${String(name)}:***`).join(',');
  if (isSecretKey(key)) return '***';
  if (typeof value === 'string') return redactCredentials(value);
  if (value !== null && typeof value === 'object') return redactCredentials(JSON.stringify(value) ?? '');
  return value;
}

function maskValue(key: string, value: unknown): string {
  return JSON.stringify(shownValue(key, value)) ?? String(value);
}

/** The secret values among settings, as written or as parsed: what no configuration message may repeat. */
function secretValues(settings: Record<string, unknown>): string[] {
  const out: string[] = [];
  for (const [key, v] of Object.entries(settings)) {
    if (v instanceof Map && USER_LIST.test(key)) {
      // Parsed users: name → password.
      for (const p of v.values()) if (typeof p === 'string') out.push(p);
    } else if (v instanceof Map) {
      // A parsed key list: key → client name.
      for (const k of v.keys()) if (typeof k === 'string') out.push(k);
    } else if (KEY_LIST.test(key) && typeof v === 'string') {
      for (const p of v.split(',')) out.push(p.trim(), p.slice(p.indexOf(':') + 1).trim());
    } else if (isSecretKey(key) && v !== undefined && v !== null) {
      out.push(typeof v === 'string' ? v : (JSON.stringify(v) ?? ''));
    }
  }
  return out;
}

/**
 * A configuration message as it may be shown: credentials hidden by shape, and every
 * secret value of each `settings` (raw or parsed) hidden literally, wherever the
 * message quotes it (a JSON error's excerpt of the file, an adapter's complaint).
 */
export function redactConfigMessage(message: string, ...settings: Record<string, unknown>[]): string {
  return redactValues(redactCredentials(message), settings.flatMap(secretValues));
}

export function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, 'config', 'default.json'))) return dir;
    dir = dirname(dir);
  }
  return process.cwd();
}

function readJson(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new GatewayError('CONFIG_INVALID', `cannot read config file ${path}: ${(err as Error).message}`);
  }
  try {
    const parsed = JSON.parse(text) as unknown;
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not a JSON object');
    return parsed as Record<string, unknown>;
  } catch (err) {
    throw new GatewayError('CONFIG_INVALID', `config file ${path} is not a JSON object: ${(err as Error).message}`);
  }
}

/** Drop documentation entries (`//…` keys) from a config file. */
function settingsOnly(obj: Record<string, unknown>, path: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) {
    if (k.startsWith('//') || k === '$comment') continue;
    if (!(k in ConfigSchema.shape)) {
      throw new GatewayError('CONFIG_INVALID', `unknown setting ${k} in ${path}`);
    }
    out[k] = v;
  }
  return out;
}

/**
 * Merge default.json ← GATEWAY_CONFIG file ← environment ← overrides, then validate.
 * An invalid value throws CONFIG_INVALID naming the key, the value and what is allowed.
 */
export function loadConfig(env: Record<string, string | undefined>, overrides: ConfigInput = {}): Config {
  // Only settings: other variables of the environment are not this gateway's to judge.
  const fromEnv: Record<string, unknown> = {};
  for (const key of CONFIG_KEYS) fromEnv[key] = env[key];
  try {
    return parseConfig(env, overrides);
  } catch (err) {
    if (!(err instanceof GatewayError) || err.code !== 'CONFIG_INVALID') throw err;
    // One exit for every configuration message, whatever built it: none may carry a secret. The
    // validation message quotes values already masked by key (maskValue); hiding credentials by
    // shape again would hide the client names of `APP_API_KEYS = "mobile:***"` too.
    const secrets = [...secretValues(fromEnv), ...secretValues(overrides)];
    const message = masked.has(err) ? redactValues(err.message, secrets) : redactValues(redactCredentials(err.message), secrets);
    throw new GatewayError('CONFIG_INVALID', message);
  }
}

/** Errors whose message quotes setting values through maskValue only. */
const masked = new WeakSet<Error>();

function parseConfig(env: Record<string, string | undefined>, overrides: ConfigInput): Config {
  const defaultsPath = join(projectRoot(), 'config', 'default.json');
  const merged: Record<string, unknown> = settingsOnly(readJson(defaultsPath), defaultsPath);
  const extra = env.GATEWAY_CONFIG;
  if (extra) {
    const p = resolve(extra);
    Object.assign(merged, settingsOnly(readJson(p), p));
  }
  for (const key of CONFIG_KEYS) {
    const v = env[key];
    if (v !== undefined) merged[key] = v;
  }
  for (const [k, v] of Object.entries(overrides)) if (v !== undefined) merged[k] = v;

  const result = ConfigSchema.safeParse(merged);
  if (!result.success) {
    const lines = result.error.issues.map((issue) => {
      const key = String(issue.path[0] ?? '?');
      return `${key} = ${maskValue(key, merged[key])}: ${issue.message}`;
    });
    const err = new GatewayError('CONFIG_INVALID', `invalid configuration: ${lines.join('; ')}`);
    masked.add(err);
    throw err;
  }
  return result.data;
}

/** The configuration as it may be logged: secrets masked, key lists by client name, credentials in URLs hidden. */
export function describeConfig(config: Config): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of CONFIG_KEYS) {
    const v = config[key];
    if (v === undefined) continue;
    out[key] = shownValue(key, v);
  }
  return out;
}
