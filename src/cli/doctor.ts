import { accessSync, constants, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import amqp from 'amqplib';
import type { Config } from '../config.js';
import { errorCode, errorMessage, GatewayError } from '../errors.js';
import { connectFailure, redact } from '../publish/broker.js';
import { SqliteStore } from '../store/sqlite/index.js';
import { systemClock } from '../clock.js';
import type { Store } from '../store/types.js';
import { sqliteFile } from './store.js';

/** One check's outcome, as `doctor` prints it. */
export interface CheckResult {
  status: 'ok' | 'FAIL' | 'skip';
  name: string;
  detail: string;
}

interface Check {
  name: string;
  /** Why the check does not apply (a channel that is off), or null. */
  skip: string | null;
  run: (signal: AbortSignal) => Promise<string>;
}

/**
 * Every check a gateway of this configuration depends on: the store, each broker
 * node, each configured channel's peer. Checks run one after another (their
 * output is read top to bottom, and none waits long), each bounded by `timeoutMs`;
 * none sends a message or changes what a running gateway holds (the store probe
 * writes the same `_store` key /readyz writes).
 */
export function checks(config: Config): Check[] {
  const list: Check[] = [{ name: 'store', skip: null, run: () => checkStore(config) }];
  for (const url of config.AMQP_URL.split(',').map((u) => u.trim()).filter(Boolean)) {
    list.push({ name: 'broker', skip: null, run: () => checkBroker(url) });
  }
  list.push({ name: 'sms', skip: config.SMPP_URL ? null : 'SMPP_URL is not set', run: (signal) => checkSmpp(config.SMPP_URL!, signal) });
  list.push({ name: 'imap', skip: config.IMAP_URL ? null : 'IMAP_URL is not set', run: () => checkImap(config.IMAP_URL!) });
  list.push({ name: 'smtp', skip: config.SMTP_URL ? null : 'SMTP_URL is not set', run: () => checkSmtp(config.SMTP_URL!) });
  list.push({
    name: 'wechat',
    skip: config.WECHAT_TOKEN ? null : 'WECHAT_TOKEN is not set',
    // Not /cgi-bin/token: fetching a token would invalidate the one the running gateway holds.
    run: (signal) => checkHttp(`${config.WECHAT_API_URL.replace(/\/+$/, '')}/cgi-bin/getcallbackip`, signal),
  });
  list.push({ name: 'weibo', skip: config.WEIBO_APP_SECRET ? null : 'WEIBO_APP_SECRET is not set', run: (signal) => checkHttp(config.WEIBO_API_URL, signal) });
  list.push({
    name: 'telegram',
    skip: config.TELEGRAM_BOT_TOKEN ? null : 'TELEGRAM_BOT_TOKEN is not set',
    run: (signal) => checkTelegram(config.TELEGRAM_API_URL, config.TELEGRAM_BOT_TOKEN!, signal),
  });
  return list;
}

export async function runCheck(check: Check, timeoutMs: number): Promise<CheckResult> {
  if (check.skip) return { status: 'skip', name: check.name, detail: check.skip };
  const ctl = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      ctl.abort();
      reject(new GatewayError('TIMEOUT', `no answer within ${timeoutMs} ms`));
    }, timeoutMs);
  });
  try {
    return { status: 'ok', name: check.name, detail: await Promise.race([check.run(ctl.signal), timeout]) };
  } catch (err) {
    return { status: 'FAIL', name: check.name, detail: failure(err) };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The peer's URL and its own code come first in the messages built here; other
 * errors (a timeout, the store's) are `CODE message`.
 */
function failure(err: unknown): string {
  const code = errorCode(err);
  const msg = errorMessage(err);
  if (err instanceof GatewayError && WRAPPED.has(err.code)) return msg;
  return msg.includes(code) ? msg : `${code} ${msg}`;
}
const WRAPPED = new Set(['BROKER_UNAVAILABLE', 'VENDOR_ERROR', 'AUTH_FAILED', 'NOT_FOUND']);

function elapsed(started: number): string {
  return `${Math.round(performance.now() - started)} ms`;
}

// ---- store -----------------------------------------------------------------

async function checkStore(config: Config): Promise<string> {
  if (config.DATABASE_URL) {
    const started = performance.now();
    const { PostgresStore } = await import('../store/postgres/index.js');
    const store = await PostgresStore.open({ url: config.DATABASE_URL, clock: systemClock, instanceId: `cli-doctor:${process.pid}`, poolSize: 1 });
    const warnings = store.serverWarnings.map((w) => `; warning: ${w}`).join('');
    return (await probeStore(store, `postgres ${config.DATABASE_URL}`, started)) + warnings;
  }
  const dir = resolve(config.DATA_DIR);
  if (!existsSync(sqliteFile(config))) {
    // No journal yet (the gateway never ran here): prove the directory takes files without creating a journal in it.
    const parent = existsSync(dir) ? dir : null;
    if (!parent) {
      accessSync(resolve(dir, '..'), constants.W_OK);
      return `sqlite ${config.DATA_DIR} (no journal yet; the directory will be created)`;
    }
    const started = performance.now();
    rmSync(mkdtempSync(join(dir, '.doctor-')), { recursive: true });
    return `sqlite ${config.DATA_DIR} (no journal yet; directory writable, ${elapsed(started)})`;
  }
  const started = performance.now();
  return probeStore(new SqliteStore(config.DATA_DIR, { sync: config.STORE_SYNC, checkpointEveryMs: 0 }, systemClock), `sqlite ${config.DATA_DIR}`, started);
}

async function probeStore(store: Store, name: string, opened: number): Promise<string> {
  try {
    const started = performance.now();
    const err = await store.probe();
    if (err) throw err;
    return `${name} (write probe ${elapsed(started)}; opened in ${Math.round(started - opened)} ms)`;
  } finally {
    await store.close();
  }
}

// ---- broker ----------------------------------------------------------------

async function checkBroker(url: string): Promise<string> {
  const started = performance.now();
  let conn: amqp.ChannelModel;
  try {
    conn = await amqp.connect(url, { clientProperties: { connection_name: 'intake-gateway doctor' }, timeout: 5000 });
  } catch (err) {
    const f = connectFailure(err, url);
    throw new GatewayError('BROKER_UNAVAILABLE', `${redact(url)} ${f.reason.startsWith(f.code) ? f.reason : `${f.code} ${f.reason}`}`);
  }
  conn.on('error', () => {});
  await conn.close().catch(() => {});
  return `${redact(url)} (connected ${elapsed(started)})`;
}

// ---- channels --------------------------------------------------------------

/** bind_transceiver with the gateway's credentials, then unbind: the SMSC accepts this ESME. */
async function checkSmpp(url: string, signal: AbortSignal): Promise<string> {
  const { default: smpp } = await import('smpp');
  const { parseSmppUrl } = await import('../channels/sms/adapter.js');
  const names = new Map<number, string>(Object.entries(smpp.errors as Record<string, number>).map(([name, code]) => [code, name]));
  const target = parseSmppUrl(url);
  const started = performance.now();
  return new Promise<string>((resolvePromise, reject) => {
    const session = smpp.connect({ host: target.host, port: target.port, tls: target.tls });
    let done = false;
    const finish = (err: Error | null, detail = '') => {
      if (done) return;
      done = true;
      signal.removeEventListener('abort', onAbort);
      if (err) {
        session.destroy();
        reject(err);
      } else resolvePromise(detail);
    };
    const onAbort = () => finish(new GatewayError('TIMEOUT', 'no answer from the SMSC'));
    signal.addEventListener('abort', onAbort);
    session.on('error', (err: Error) => finish(new GatewayError('VENDOR_ERROR', `${errorCode(err)} ${url} ${errorMessage(err)}`)));
    session.on('close', () => finish(new GatewayError('VENDOR_ERROR', `${url} closed the connection before answering the bind`)));
    session.on(target.tls ? 'secureConnect' : 'connect', () => {
      session.bind_transceiver({ system_id: target.systemId, password: target.password, interface_version: 0x34 }, (resp) => {
        if (resp.command_status !== 0) {
          const status = names.get(resp.command_status) ?? `0x${resp.command_status.toString(16).padStart(8, '0')}`;
          finish(new GatewayError('AUTH_FAILED', `${url} refused bind_transceiver: ${status}`));
          return;
        }
        const bound = elapsed(started);
        const smsc = typeof resp.system_id === 'string' && resp.system_id ? ` (${resp.system_id})` : '';
        session.unbind(() => {
          session.close();
          finish(null, `${url} bound as transceiver${smsc} in ${bound}, unbound`);
        });
      });
    });
  });
}

async function checkImap(url: string): Promise<string> {
  const { ImapFlow } = await import('imapflow');
  const { parseImapUrl } = await import('../channels/mailbox/imap.js');
  const t = parseImapUrl(url);
  const started = performance.now();
  const client = new ImapFlow({
    host: t.host,
    port: t.port,
    secure: t.secure,
    auth: { user: t.user, pass: t.pass },
    logger: false,
    connectionTimeout: 5000,
    greetingTimeout: 5000,
    socketTimeout: 5000,
    clientInfo: { name: '12345-intake-gateway doctor' },
  });
  client.on('error', () => {});
  try {
    await client.connect();
    // The mailbox the gateway reads, without selecting it (STATUS changes no flag).
    const status = await client.status(t.mailbox, { messages: true, unseen: true });
    await client.logout();
    if (status === false) throw new GatewayError('NOT_FOUND', `mailbox ${t.mailbox} not found`);
    return `${url} logged in, ${t.mailbox}: ${status.messages ?? '?'} messages, ${status.unseen ?? '?'} unseen (${elapsed(started)})`;
  } catch (err) {
    client.close();
    const detail = (err as { responseText?: string }).responseText;
    throw new GatewayError('VENDOR_ERROR', `${url} ${errorMessage(err)}${detail ? `: ${detail}` : ''}`, { cause: err });
  }
}

async function checkSmtp(url: string): Promise<string> {
  const { default: nodemailer } = await import('nodemailer');
  const started = performance.now();
  const transport = nodemailer.createTransport({ url, connectionTimeout: 5000, greetingTimeout: 5000, socketTimeout: 5000, logger: false } as Parameters<typeof nodemailer.createTransport>[0]);
  try {
    await transport.verify();
    return `${url} greeted and accepted the login (${elapsed(started)})`;
  } catch (err) {
    throw new GatewayError('VENDOR_ERROR', `${url} ${errorMessage(err)}`, { cause: err });
  } finally {
    transport.close();
  }
}

/** Any HTTP answer proves the API base answers; no token is fetched and nothing is sent. */
async function checkHttp(url: string, signal: AbortSignal): Promise<string> {
  const started = performance.now();
  try {
    const res = await fetch(url, { signal, redirect: 'manual' });
    await res.arrayBuffer().catch(() => {});
    return `${url} answered HTTP ${res.status} (${elapsed(started)})`;
  } catch (err) {
    const cause = (err as { cause?: unknown }).cause;
    throw new GatewayError('VENDOR_ERROR', `${url} ${errorCode(cause ?? err)} ${errorMessage(cause ?? err)}`, { cause: err });
  }
}

/** getMe: the API answers and knows the bot token (it sends nothing and does not disturb getUpdates). */
async function checkTelegram(base: string, token: string, signal: AbortSignal): Promise<string> {
  const started = performance.now();
  const url = `${base.replace(/\/+$/, '')}/bot${token}/getMe`;
  let res: Response;
  try {
    res = await fetch(url, { signal });
  } catch (err) {
    const cause = (err as { cause?: unknown }).cause;
    throw new GatewayError('VENDOR_ERROR', `${base} ${errorCode(cause ?? err)} ${errorMessage(cause ?? err)}`, { cause: err });
  }
  const body = (await res.json().catch(() => null)) as { ok?: boolean; result?: { username?: string }; description?: string } | null;
  if (!res.ok || !body?.ok) {
    throw new GatewayError(res.status === 401 || res.status === 404 ? 'AUTH_FAILED' : 'VENDOR_ERROR', `${base} getMe answered HTTP ${res.status}${body?.description ? `: ${body.description}` : ''}`);
  }
  return `${base} getMe: @${body.result?.username ?? '?'} (${elapsed(started)})`;
}
