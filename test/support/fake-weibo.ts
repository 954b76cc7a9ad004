import { readBody, serveLocal } from './local-http.js';
import { weiboSignature } from '../../src/channels/weibo/parse.js';

/**
 * A local stand-in for m.api.weibo.com: `POST /2/messages/reply.json`
 * (customer-service reply: form-encoded `access_token`, `type`, `data` = URL-encoded
 * JSON, `receiver_id`), recording each call. Plus client helpers that sign and send
 * pushes as the fans-service platform does (millisecond timestamp, App Secret).
 */

export interface WeiboReply {
  accessToken: string | null;
  receiverId: string;
  type: string;
  /** `data` decoded from its URL-encoded JSON. */
  data: { text?: string } & Record<string, unknown>;
  rawBody: string;
  contentType: string;
}

export interface FakeWeibo {
  url: string;
  replies: WeiboReply[];
  calls: { path: string; body: string }[];
  /** Weibo error_codes the next reply calls answer with, in order. */
  replyErrors: { status: number; errorCode: number; error: string }[];
  close(): Promise<void>;
}


export async function startFakeWeibo(opts: { accessToken: string }): Promise<FakeWeibo> {
  const replies: WeiboReply[] = [];
  const calls: { path: string; body: string }[] = [];
  const state = { replyErrors: [] as FakeWeibo['replyErrors'] };
  const local = await serveLocal(async (req, res) => {
    const u = new URL(req.url ?? '/', 'http://localhost');
    const body = await readBody(req);
    calls.push({ path: u.pathname, body });
    const send = (status: number, value: unknown) => {
      res.writeHead(status, { 'Content-Type': 'application/json;charset=UTF-8' });
      res.end(JSON.stringify(value));
    };
    if (u.pathname !== '/2/messages/reply.json' || req.method !== 'POST') return send(404, { error: 'Request api not found!', error_code: 10020, request: u.pathname });
    const form = new URLSearchParams(body);
    const token = form.get('access_token') ?? u.searchParams.get('access_token');
    if (token !== opts.accessToken) return send(401, { error: 'invalid_access_token', error_code: 21332, request: u.pathname });
    const scripted = state.replyErrors.shift();
    if (scripted) return send(scripted.status, { error: scripted.error, error_code: scripted.errorCode, request: u.pathname });
    const receiverId = form.get('receiver_id');
    const type = form.get('type');
    const dataText = form.get('data');
    if (!receiverId || !/^\d+$/.test(receiverId) || !type || !dataText) {
      return send(400, { error: 'miss required parameter', error_code: 10016, request: u.pathname });
    }
    let data: WeiboReply['data'];
    try {
      data = JSON.parse(dataText) as WeiboReply['data'];
    } catch {
      return send(400, { error: 'data is not json', error_code: 10008, request: u.pathname });
    }
    replies.push({ accessToken: token, receiverId, type, data, rawBody: body, contentType: String(req.headers['content-type'] ?? '') });
    send(200, { result: true, sender_id: '1902538057', receiver_id: receiverId, type, data: encodeURIComponent(dataText) });
  });
  return {
    url: local.url,
    replies,
    calls,
    get replyErrors() {
      return state.replyErrors;
    },
    set replyErrors(v) {
      state.replyErrors = v;
    },
    close() {
      return local.close();
    },
  };
}

// ---------------------------------------------------------------------------
// Client side: what the fans-service platform sends to the gateway.

export function signedQuery(appSecret: string, extra: Record<string, string> = {}, opts: { badSignature?: boolean } = {}): URLSearchParams {
  const timestamp = String(Date.now()); // milliseconds, unlike WeChat
  const nonce = String(Math.floor(Math.random() * 1e8));
  let signature = weiboSignature(appSecret, timestamp, nonce);
  if (opts.badSignature) signature = signature.replace(/^./, (c) => (c === '0' ? '1' : '0'));
  return new URLSearchParams({ signature, timestamp, nonce, ...extra });
}

/** Twitter-style `created_at` as Weibo sends it, in +0800. */
export function weiboDate(d: Date): string {
  const local = new Date(d.getTime() + 8 * 3600_000);
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const p = (n: number) => String(n).padStart(2, '0');
  return `${days[local.getUTCDay()]} ${months[local.getUTCMonth()]} ${p(local.getUTCDate())} ${p(local.getUTCHours())}:${p(local.getUTCMinutes())}:${p(local.getUTCSeconds())} +0800 ${local.getUTCFullYear()}`;
}

let seq = 0;
/**
 * A push body as raw JSON text with int64 ids written as bare numbers (as Weibo
 * does), so a parser going through JS numbers would corrupt them.
 */
export function weiboPushBody(opts: { type: string; senderId: string; receiverId?: string; text?: string; data?: Record<string, unknown>; createdAt?: string }): string {
  const createdAt = opts.createdAt ?? weiboDate(new Date(Date.now() + seq++ * 1000));
  return `{"type":${JSON.stringify(opts.type)},"receiver_id":${opts.receiverId ?? '1902538057'},"sender_id":${opts.senderId},"created_at":${JSON.stringify(createdAt)},"text":${JSON.stringify(opts.text ?? '')},"data":${JSON.stringify(opts.data ?? {})}}`;
}

export async function pushToWeibo(baseUrl: string, appSecret: string, body: string, opts: { badSignature?: boolean; noSignature?: boolean } = {}): Promise<{ status: number; body: string }> {
  const q = opts.noSignature ? new URLSearchParams() : signedQuery(appSecret, {}, opts);
  const r = await fetch(`${baseUrl}/weibo?${q}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
  return { status: r.status, body: await r.text() };
}

export async function verifyWeiboUrl(baseUrl: string, appSecret: string, echostr: string, opts: { badSignature?: boolean } = {}): Promise<{ status: number; body: string }> {
  const r = await fetch(`${baseUrl}/weibo?${signedQuery(appSecret, { echostr }, opts)}`);
  return { status: r.status, body: await r.text() };
}
