import type { ServerResponse } from 'node:http';
import { readBody, serveLocal } from './local-http.js';

/**
 * A local stand-in for api.telegram.org (Bot API): `/bot<token>/<method>` for
 * getUpdates (long polling with offset confirmation), sendMessage, getFile,
 * setWebhook, deleteWebhook, getMe, and `/file/bot<token>/<file_path>` downloads.
 * Parameters are read from the query string, urlencoded or JSON bodies, as the
 * real API does. Every call is recorded. Plus helpers that build Updates and post
 * them to a webhook as Telegram does.
 */

export interface TelegramCall {
  method: string;
  params: Record<string, unknown>;
  at: number;
}

export interface SentTelegramMessage {
  chatId: string;
  text: string;
  params: Record<string, unknown>;
  messageId: number;
}

export interface FakeFile {
  data: Buffer;
  filePath: string;
  /** Download answers with this HTTP status instead of the bytes. */
  downloadStatus?: number;
  delayMs?: number;
}

export interface FakeTelegram {
  url: string;
  token: string;
  calls: TelegramCall[];
  sent: SentTelegramMessage[];
  files: Map<string, FakeFile>;
  /** Offsets passed to getUpdates, in order. */
  offsets: (number | null)[];
  /** Queue an update for getUpdates; wakes a waiting long poll. */
  pushUpdate(update: Record<string, unknown>): void;
  /** Updates not yet confirmed by an offset above their id. */
  pending(): Record<string, unknown>[];
  /** Errors the next sendMessage calls answer with, in order. */
  sendErrors: { errorCode: number; description: string; retryAfter?: number }[];
  webhook: { url: string; secretToken: string | null } | null;
  close(): Promise<void>;
}


function reply(res: ServerResponse, status: number, value: unknown): void {
  if (res.destroyed) return;
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(value));
}

const num = (v: unknown): number | null => (v === undefined || v === null || v === '' ? null : Number(v));

export async function startFakeTelegram(opts: { token: string; maxPollSeconds?: number }): Promise<FakeTelegram> {
  const calls: TelegramCall[] = [];
  const sent: SentTelegramMessage[] = [];
  const files = new Map<string, FakeFile>();
  const offsets: (number | null)[] = [];
  let queue: Record<string, unknown>[] = [];
  const waiters = new Set<() => void>();
  const state = { sendErrors: [] as FakeTelegram['sendErrors'], webhook: null as FakeTelegram['webhook'] };
  let messageSeq = 1000;
  let closing = false;

  const wake = () => {
    for (const w of [...waiters]) w();
  };

  const local = await serveLocal(async (req, res) => {
    const u = new URL(req.url ?? '/', 'http://localhost');
    const fileMatch = /^\/file\/bot([^/]+)\/(.+)$/.exec(u.pathname);
    if (fileMatch) {
      if (fileMatch[1] !== opts.token) return reply(res, 401, { ok: false, error_code: 401, description: 'Unauthorized' });
      const f = [...files.values()].find((x) => x.filePath === decodeURIComponent(fileMatch[2]!));
      if (!f) return reply(res, 404, { ok: false, error_code: 404, description: 'Not Found' });
      if (f.delayMs) await new Promise((r) => setTimeout(r, f.delayMs));
      if (f.downloadStatus) return reply(res, f.downloadStatus, { ok: false, error_code: f.downloadStatus, description: 'download failed' });
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': f.data.length });
      res.end(f.data);
      return;
    }
    const m = /^\/bot([^/]+)\/(\w+)$/.exec(u.pathname);
    if (!m) return reply(res, 404, { ok: false, error_code: 404, description: 'Not Found' });
    if (m[1] !== opts.token) return reply(res, 401, { ok: false, error_code: 401, description: 'Unauthorized' });
    const method = m[2]!;
    const body = await readBody(req);
    const params: Record<string, unknown> = Object.fromEntries(u.searchParams);
    const ct = String(req.headers['content-type'] ?? '');
    if (ct.includes('application/json') && body) Object.assign(params, JSON.parse(body) as object);
    else if (ct.includes('application/x-www-form-urlencoded')) Object.assign(params, Object.fromEntries(new URLSearchParams(body)));
    calls.push({ method, params, at: Date.now() });

    switch (method) {
      case 'getMe':
        return reply(res, 200, { ok: true, result: { id: 1234567, is_bot: true, first_name: '12345', username: 'hotline12345_bot' } });
      case 'setWebhook':
        state.webhook = { url: String(params.url ?? ''), secretToken: (params.secret_token as string | undefined) ?? null };
        return reply(res, 200, { ok: true, result: true, description: 'Webhook was set' });
      case 'deleteWebhook':
        state.webhook = null;
        return reply(res, 200, { ok: true, result: true, description: 'Webhook was deleted' });
      case 'getUpdates': {
        if (state.webhook) {
          return reply(res, 409, { ok: false, error_code: 409, description: "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first" });
        }
        const offset = num(params.offset);
        offsets.push(offset);
        // Confirm: everything below the offset is forgotten.
        if (offset !== null) queue = queue.filter((x) => (x.update_id as number) >= offset);
        const limit = Math.min(100, num(params.limit) ?? 100);
        const timeout = Math.min(num(params.timeout) ?? 0, opts.maxPollSeconds ?? 2);
        const deadline = Date.now() + timeout * 1000;
        while (queue.length === 0 && Date.now() < deadline && !closing && !res.destroyed) {
          await new Promise<void>((resolve) => {
            const t = setTimeout(done, Math.max(0, deadline - Date.now()));
            function done() {
              clearTimeout(t);
              waiters.delete(done);
              resolve();
            }
            waiters.add(done);
          });
        }
        return reply(res, 200, { ok: true, result: queue.slice(0, limit) });
      }
      case 'sendMessage': {
        const scripted = state.sendErrors.shift();
        if (scripted) {
          return reply(res, scripted.errorCode, {
            ok: false,
            error_code: scripted.errorCode,
            description: scripted.description,
            ...(scripted.retryAfter ? { parameters: { retry_after: scripted.retryAfter } } : {}),
          });
        }
        if (params.chat_id === undefined || typeof params.text !== 'string' || params.text === '') {
          return reply(res, 400, { ok: false, error_code: 400, description: 'Bad Request: message text is empty' });
        }
        const messageId = ++messageSeq;
        sent.push({ chatId: String(params.chat_id), text: params.text, params, messageId });
        return reply(res, 200, {
          ok: true,
          result: { message_id: messageId, date: Math.floor(Date.now() / 1000), chat: { id: Number(params.chat_id), type: 'private' }, text: params.text },
        });
      }
      case 'getFile': {
        const f = files.get(String(params.file_id ?? ''));
        if (!f) return reply(res, 400, { ok: false, error_code: 400, description: 'Bad Request: invalid file_id' });
        return reply(res, 200, { ok: true, result: { file_id: params.file_id, file_unique_id: `u${params.file_id}`, file_size: f.data.length, file_path: f.filePath } });
      }
      default:
        return reply(res, 404, { ok: false, error_code: 404, description: 'Not Found: method not found' });
    }
  });
  return {
    url: local.url,
    token: opts.token,
    calls,
    sent,
    files,
    offsets,
    pushUpdate(update) {
      queue.push(update);
      wake();
    },
    pending: () => [...queue],
    get sendErrors() {
      return state.sendErrors;
    },
    set sendErrors(v) {
      state.sendErrors = v;
    },
    get webhook() {
      return state.webhook;
    },
    set webhook(v) {
      state.webhook = v;
    },
    close() {
      closing = true;
      wake();
      return local.close();
    },
  };
}

// ---------------------------------------------------------------------------
// Client side: Updates as Telegram builds them.

let updateSeq = 500_000_000;
let messageSeqClient = 1;

export function nextUpdateId(): number {
  return ++updateSeq;
}

export function makeUpdate(message: Record<string, unknown>, opts: { updateId?: number; userId?: number; firstName?: string } = {}): Record<string, unknown> {
  const userId = opts.userId ?? 4_000_000_000_123;
  return {
    update_id: opts.updateId ?? nextUpdateId(),
    message: {
      message_id: messageSeqClient++,
      date: Math.floor(Date.now() / 1000),
      chat: { id: userId, type: 'private', first_name: opts.firstName ?? 'Wang' },
      from: { id: userId, is_bot: false, first_name: opts.firstName ?? 'Wang', language_code: 'zh-hans' },
      ...message,
    },
  };
}

export async function postWebhook(baseUrl: string, secret: string | null, update: unknown): Promise<{ status: number; body: string }> {
  const headers: Record<string, string> = { 'Content-Type': 'application/json' };
  if (secret !== null) headers['X-Telegram-Bot-Api-Secret-Token'] = secret;
  const r = await fetch(`${baseUrl}/telegram/webhook`, { method: 'POST', headers, body: JSON.stringify(update) });
  return { status: r.status, body: await r.text() };
}
