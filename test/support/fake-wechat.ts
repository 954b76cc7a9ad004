import type { ServerResponse } from 'node:http';
import { readBody, serveLocal } from './local-http.js';
import { randomBytes } from 'node:crypto';
import { XMLParser } from 'fast-xml-parser';
import { WechatCrypto, wechatSignature } from '../../src/channels/wechat/crypto.js';

/**
 * A local stand-in for api.weixin.qq.com: the endpoints the gateway uses, following
 * the documented request and answer formats, recording every call. Plus client
 * helpers that build URL-verification requests and pushes exactly as WeChat does
 * (signature, safe-mode encryption, msg_signature).
 */

export interface FakeWechatCall {
  method: string;
  path: string;
  query: Record<string, string>;
  body: string;
  at: number;
}

export interface SentCustomMessage {
  accessToken: string;
  touser: string;
  msgtype: string;
  content: string;
  body: unknown;
}

export interface FakeMedia {
  data: Buffer;
  contentType: string;
  /** Answer only after this many ms (a slow media server). */
  delayMs?: number;
  /** Answer with this errcode instead of the file. */
  errcode?: number;
  /** Answer with this HTTP status and no file. */
  httpStatus?: number;
}

export interface FakeWechat {
  url: string;
  calls: FakeWechatCall[];
  sent: SentCustomMessage[];
  media: Map<string, FakeMedia>;
  /** errcodes the next custom/send calls answer with, in order (0 = ok). */
  sendErrors: number[];
  /** errcodes the next custom/send calls to this OpenID answer with, in order: keeps tests independent. */
  failSendTo(touser: string, errcodes: number[]): void;
  /** Lifetime of issued tokens, seconds. */
  tokenTtl: number;
  tokensIssued: number;
  /** Invalidate the current token (as when another process fetched a new one). */
  expireToken(): void;
  close(): Promise<void>;
}

const ERRMSG: Record<number, string> = {
  [-1]: 'system error',
  40001: 'invalid credential, access_token is invalid or not latest',
  40007: 'invalid media_id',
  40013: 'invalid appid',
  40014: 'invalid access_token',
  41001: 'access_token missing',
  42001: 'access_token expired',
  45009: 'reach max api daily quota limit',
  45015: 'response out of time limit or subscription is canceled',
};


function json(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  // The real API answers errors as text/plain JSON as often as application/json.
  res.writeHead(status, { 'Content-Type': 'application/json; encoding=utf-8', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

function err(res: ServerResponse, errcode: number): void {
  json(res, 200, { errcode, errmsg: ERRMSG[errcode] ?? 'error' });
}

export async function startFakeWechat(opts: { appId: string; appSecret: string; tokenTtl?: number }): Promise<FakeWechat> {
  const calls: FakeWechatCall[] = [];
  const sent: SentCustomMessage[] = [];
  const media = new Map<string, FakeMedia>();
  let current: { token: string; expiresAt: number } | null = null;
  const state = { tokensIssued: 0, tokenTtl: opts.tokenTtl ?? 7200, sendErrors: [] as number[] };
  const errorsFor = new Map<string, number[]>();

  const valid = (token: string | undefined): number => {
    if (!token) return 41001;
    if (!current || token !== current.token) return 40001;
    if (Date.now() >= current.expiresAt) return 42001;
    return 0;
  };

  const local = await serveLocal(async (req, res) => {
    const u = new URL(req.url ?? '/', 'http://localhost');
    const body = await readBody(req);
    const query = Object.fromEntries(u.searchParams);
    calls.push({ method: req.method ?? 'GET', path: u.pathname, query, body, at: Date.now() });
    if (u.pathname === '/cgi-bin/token' && req.method === 'GET') {
      if (query.grant_type !== 'client_credential') return err(res, 40002);
      if (query.appid !== opts.appId) return err(res, 40013);
      if (query.secret !== opts.appSecret) return err(res, 40125);
      state.tokensIssued++;
      // A new token invalidates the previous one (documented).
      current = { token: `ACCESS_TOKEN_${state.tokensIssued}_${randomBytes(6).toString('hex')}`, expiresAt: Date.now() + state.tokenTtl * 1000 };
      return json(res, 200, { access_token: current.token, expires_in: state.tokenTtl });
    }
    if (u.pathname === '/cgi-bin/media/get' && req.method === 'GET') {
      const code = valid(query.access_token);
      if (code) return err(res, code);
      const m = media.get(query.media_id ?? '');
      if (!m) return err(res, 40007);
      if (m.delayMs) await new Promise((r) => setTimeout(r, m.delayMs));
      if (res.destroyed) return;
      if (m.httpStatus) {
        res.writeHead(m.httpStatus).end();
        return;
      }
      if (m.errcode) return err(res, m.errcode);
      const ext = m.contentType.includes('png') ? 'png' : m.contentType.includes('amr') ? 'amr' : 'jpg';
      res.writeHead(200, {
        'Content-Type': m.contentType,
        'Content-disposition': `attachment; filename="${query.media_id}.${ext}"`,
        'Content-Length': m.data.length,
      });
      res.end(m.data);
      return;
    }
    if (u.pathname === '/cgi-bin/message/custom/send' && req.method === 'POST') {
      const code = valid(query.access_token);
      if (code) return err(res, code);
      let parsed: { touser?: string; msgtype?: string; text?: { content?: string } };
      try {
        parsed = JSON.parse(body) as typeof parsed;
      } catch {
        return err(res, 47001);
      }
      const scripted = (parsed.touser ? errorsFor.get(parsed.touser)?.shift() : undefined) ?? state.sendErrors.shift();
      if (scripted) return err(res, scripted);
      if (!parsed.touser || parsed.msgtype !== 'text' || typeof parsed.text?.content !== 'string') return err(res, 44002);
      sent.push({ accessToken: query.access_token!, touser: parsed.touser, msgtype: parsed.msgtype, content: parsed.text.content, body: parsed });
      return json(res, 200, { errcode: 0, errmsg: 'ok' });
    }
    res.writeHead(404).end();
  });
  return {
    url: local.url,
    calls,
    sent,
    media,
    get sendErrors() {
      return state.sendErrors;
    },
    set sendErrors(v: number[]) {
      state.sendErrors = v;
    },
    failSendTo(touser: string, errcodes: number[]) {
      errorsFor.set(touser, [...errcodes]);
    },
    get tokenTtl() {
      return state.tokenTtl;
    },
    set tokenTtl(v: number) {
      state.tokenTtl = v;
    },
    get tokensIssued() {
      return state.tokensIssued;
    },
    expireToken() {
      current = null;
    },
    close() {
      return local.close();
    },
  };
}

// ---------------------------------------------------------------------------
// Client side: what WeChat's servers send to the gateway.

/** A pushed message as WeChat formats it: strings in CDATA, numbers bare. */
export function wechatXml(fields: Record<string, string | number | bigint>): string {
  const parts = Object.entries(fields).map(([k, v]) =>
    typeof v === 'string' ? `<${k}><![CDATA[${v.replace(/]]>/g, ']]]]><![CDATA[>')}]]></${k}>` : `<${k}>${String(v)}</${k}>`,
  );
  return `<xml>${parts.join('')}</xml>`;
}

export interface WechatAccount {
  token: string;
  appId: string;
  /** Set for safe mode (安全模式). */
  aesKey?: string;
  ghId?: string;
}

let msgIdCounter = 7_000_000_000_000_000_000n;
/** A fresh 64-bit MsgId above 2^53, so any pass through a JS number would show. */
export function nextMsgId(): string {
  msgIdCounter += 1n;
  return msgIdCounter.toString();
}

export function textMessage(from: string, content: string, msgId = nextMsgId(), ghId = 'gh_12345test'): string {
  return wechatXml({ ToUserName: ghId, FromUserName: from, CreateTime: Math.floor(Date.now() / 1000), MsgType: 'text', Content: content, MsgId: BigInt(msgId) });
}

export function randomNonce(): string {
  return String(Math.floor(Math.random() * 1e10));
}

export async function verifyUrl(baseUrl: string, account: WechatAccount, echostr: string, opts: { badSignature?: boolean } = {}): Promise<{ status: number; body: string }> {
  const timestamp = String(Math.floor(Date.now() / 1000));
  const nonce = randomNonce();
  let signature = wechatSignature(account.token, timestamp, nonce);
  if (opts.badSignature) signature = signature.replace(/^./, (c) => (c === '0' ? '1' : '0'));
  const q = new URLSearchParams({ signature, timestamp, nonce, echostr });
  const r = await fetch(`${baseUrl}/wechat?${q}`);
  return { status: r.status, body: await r.text() };
}

export interface PushResult {
  status: number;
  body: string;
  /** The passive reply: decrypted in safe mode; null for `success`/empty answers. */
  reply: Record<string, string> | null;
  /** Safe mode: whether the reply's MsgSignature checked out. */
  replySignatureOk: boolean | null;
  elapsedMs: number;
}

const replyParser = new XMLParser({ parseTagValue: false, trimValues: true });

/**
 * POST one message as WeChat does: plaintext with `signature`, or (when the account
 * has an aesKey) safe mode: `<Encrypt>` body with `encrypt_type=aes&msg_signature=`.
 */
export async function pushToWechat(
  baseUrl: string,
  account: WechatAccount,
  xml: string,
  opts: { badSignature?: boolean; timestamp?: string; nonce?: string; cryptAppId?: string; signal?: AbortSignal } = {},
): Promise<PushResult> {
  const timestamp = opts.timestamp ?? String(Math.floor(Date.now() / 1000));
  const nonce = opts.nonce ?? randomNonce();
  const signature = wechatSignature(account.token, timestamp, nonce);
  const q = new URLSearchParams({ signature, timestamp, nonce, openid: 'oOpenIdOfSender' });
  let body = xml;
  let crypto: WechatCrypto | null = null;
  if (account.aesKey) {
    crypto = new WechatCrypto(account.aesKey, account.appId);
    const sender = opts.cryptAppId ? new WechatCrypto(account.aesKey, opts.cryptAppId) : crypto;
    const encrypt = sender.encrypt(xml);
    q.set('encrypt_type', 'aes');
    q.set('msg_signature', wechatSignature(account.token, timestamp, nonce, encrypt));
    body = `<xml><ToUserName><![CDATA[${account.ghId ?? 'gh_12345test'}]]></ToUserName><Encrypt><![CDATA[${encrypt}]]></Encrypt></xml>`;
  }
  if (opts.badSignature) {
    for (const k of ['signature', 'msg_signature']) {
      const v = q.get(k);
      if (v) q.set(k, v.replace(/^./, (c) => (c === '0' ? '1' : '0')));
    }
  }
  const started = Date.now();
  const r = await fetch(`${baseUrl}/wechat?${q}`, { method: 'POST', headers: { 'Content-Type': 'text/xml' }, body, signal: opts.signal });
  const text = await r.text();
  const elapsedMs = Date.now() - started;
  let reply: Record<string, string> | null = null;
  let replySignatureOk: boolean | null = null;
  if (r.status === 200 && text.trim().startsWith('<xml')) {
    const outer = replyParser.parse(text).xml as Record<string, string>;
    if (crypto && outer.Encrypt) {
      replySignatureOk = wechatSignature(account.token, String(outer.TimeStamp), String(outer.Nonce), outer.Encrypt) === outer.MsgSignature;
      reply = replyParser.parse(crypto.decrypt(outer.Encrypt).message).xml as Record<string, string>;
    } else {
      reply = outer;
    }
  }
  return { status: r.status, body: text, reply, replySignatureOk, elapsedMs };
}
