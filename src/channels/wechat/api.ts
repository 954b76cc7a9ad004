import type { Logger } from 'pino';
import type { Clock } from '../../clock.js';
import { GatewayError } from '../../errors.js';

/**
 * Client for the official-account HTTP API (access_token, media download,
 * customer-service messages). One instance per process holds the token: WeChat
 * invalidates the previous token whenever a new one is fetched, so every caller
 * must share a single refresher.
 */

/** errcodes that mean "this access_token is no good": fetch a new one and retry once. */
export const TOKEN_ERRCODES = new Set([40001, 40014, 42001]);
/** errcodes worth retrying later: system busy, quotas and rate limits. */
const TRANSIENT_ERRCODES = new Set([-1, 45009, 45011, 45047]);

export interface WechatApiOptions {
  baseUrl: string;
  appId: string;
  appSecret: string;
  clock: Clock;
  logger: Logger;
  /** Per-call limit for API calls other than media downloads. */
  timeoutMs?: number;
}

interface Token {
  value: string;
  /** Refresh in the background from here on… */
  softAt: number;
  /** …and never use it after this. */
  hardAt: number;
}

export interface MediaFile {
  data: Buffer;
  contentType: string | null;
  disposition: string | null;
}

export class WechatApi {
  private token: Token | null = null;
  private refreshing: Promise<Token> | null = null;
  private readonly base: string;

  constructor(private readonly opts: WechatApiOptions) {
    this.base = opts.baseUrl.replace(/\/+$/, '');
  }

  /** A valid access_token, refreshed before it expires. */
  async accessToken(signal?: AbortSignal): Promise<string> {
    const now = this.opts.clock.now();
    const t = this.token;
    if (t && now < t.hardAt) {
      if (now >= t.softAt) void this.refresh().catch((err: unknown) => this.opts.logger.warn({ channel: 'wechat', err }, 'background access_token refresh failed'));
      return t.value;
    }
    return (await this.refresh(signal)).value;
  }

  /** Forget `value` (the API said it is invalid or expired); a concurrent refresh is kept. */
  invalidate(value: string): void {
    if (this.token?.value === value) this.token = null;
  }

  private refresh(signal?: AbortSignal): Promise<Token> {
    this.refreshing ??= this.fetchToken(signal).finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  private async fetchToken(signal?: AbortSignal): Promise<Token> {
    const q = new URLSearchParams({ grant_type: 'client_credential', appid: this.opts.appId, secret: this.opts.appSecret });
    const body = await this.getJson(`${this.base}/cgi-bin/token?${q}`, signal);
    const token = typeof body.access_token === 'string' ? body.access_token : null;
    if (!token) {
      const errcode = typeof body.errcode === 'number' ? body.errcode : null;
      throw new GatewayError('VENDOR_ERROR', `WeChat token endpoint refused: ${String(body.errmsg ?? 'no access_token')}`, {
        // -1 is "system busy"; a wrong AppID/secret (40013, 40125) or an IP not on the whitelist (40164) will not heal by itself.
        transient: errcode === null || errcode === -1,
        detail: { errcode, errmsg: body.errmsg ?? null },
      });
    }
    const expiresIn = typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : 7200;
    const now = this.opts.clock.now();
    const margin = Math.min(300, Math.floor(expiresIn / 5));
    const t: Token = { value: token, softAt: now + (expiresIn - 2 * margin) * 1000, hardAt: now + (expiresIn - margin) * 1000 };
    this.token = t;
    this.opts.logger.info({ channel: 'wechat', expiresIn }, 'fetched a new access_token');
    return t;
  }

  private async getJson(url: string, signal?: AbortSignal, init: RequestInit = {}): Promise<Record<string, unknown>> {
    let res: Response;
    const timeout = AbortSignal.timeout(this.opts.timeoutMs ?? 10_000);
    try {
      res = await fetch(url, { ...init, signal: signal ? AbortSignal.any([signal, timeout]) : timeout });
    } catch (err) {
      throw new GatewayError('SEND_TRANSIENT', `WeChat API unreachable: ${(err as Error).message}`, { transient: true, cause: err });
    }
    const text = await res.text().catch(() => '');
    if (!res.ok) {
      throw new GatewayError('SEND_TRANSIENT', `WeChat API answered HTTP ${res.status}`, {
        transient: res.status >= 500 || res.status === 429,
        detail: { status: res.status, body: text.slice(0, 1000) },
      });
    }
    try {
      return JSON.parse(text) as Record<string, unknown>;
    } catch {
      throw new GatewayError('VENDOR_ERROR', 'WeChat API answered something that is not JSON', { transient: true, detail: { body: text.slice(0, 1000) } });
    }
  }

  /**
   * Temporary media (`/cgi-bin/media/get`). The answer is either the file or a JSON
   * error (`{errcode, errmsg}`) with a JSON or text content type.
   */
  async fetchMedia(mediaId: string, maxBytes: number, signal: AbortSignal): Promise<MediaFile> {
    for (let attempt = 0; ; attempt++) {
      const token = await this.accessToken(signal);
      const q = new URLSearchParams({ access_token: token, media_id: mediaId });
      const res = await fetch(`${this.base}/cgi-bin/media/get?${q}`, { signal });
      const type = res.headers.get('content-type');
      if (!res.ok) {
        await res.body?.cancel().catch(() => undefined);
        throw new GatewayError('VENDOR_ERROR', `media download answered HTTP ${res.status}`, { transient: true, detail: { status: res.status } });
      }
      if (type && /json|text\/plain/i.test(type)) {
        const text = await res.text();
        let body: { errcode?: number; errmsg?: string } = {};
        try {
          body = JSON.parse(text) as typeof body;
        } catch {
          /* not an error object after all */
        }
        if (typeof body.errcode === 'number' && body.errcode !== 0) {
          if (TOKEN_ERRCODES.has(body.errcode) && attempt === 0) {
            this.invalidate(token);
            continue;
          }
          throw new GatewayError('VENDOR_ERROR', `media download refused: errcode ${body.errcode} ${body.errmsg ?? ''}`.trim(), {
            transient: TRANSIENT_ERRCODES.has(body.errcode),
            detail: body,
          });
        }
        return { data: Buffer.from(text, 'utf8'), contentType: type, disposition: res.headers.get('content-disposition') };
      }
      const declared = Number(res.headers.get('content-length') ?? NaN);
      if (Number.isFinite(declared) && declared > maxBytes) {
        await res.body?.cancel().catch(() => undefined);
        throw new GatewayError('INPUT_TOO_LARGE', `media is ${declared} bytes, above the ${maxBytes}-byte limit`, { transient: false });
      }
      const chunks: Buffer[] = [];
      let size = 0;
      if (res.body) {
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          size += chunk.length;
          if (size > maxBytes) {
            throw new GatewayError('INPUT_TOO_LARGE', `media is above the ${maxBytes}-byte limit`, { transient: false });
          }
          chunks.push(Buffer.from(chunk));
        }
      }
      return { data: Buffer.concat(chunks), contentType: type, disposition: res.headers.get('content-disposition') };
    }
  }

  /** Customer-service text message (客服消息), allowed within 48 h of the citizen's last message. */
  async sendText(touser: string, content: string): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      let token: string;
      try {
        token = await this.accessToken();
      } catch (err) {
        if (err instanceof GatewayError) {
          throw new GatewayError(err.transient ? 'SEND_TRANSIENT' : 'SEND_PERMANENT', err.message, { transient: err.transient, detail: err.detail, cause: err });
        }
        throw err;
      }
      const body = await this.getJson(`${this.base}/cgi-bin/message/custom/send?access_token=${encodeURIComponent(token)}`, undefined, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json; charset=utf-8' },
        body: JSON.stringify({ touser, msgtype: 'text', text: { content } }),
      });
      const errcode = typeof body.errcode === 'number' ? body.errcode : 0;
      if (errcode === 0) return;
      const detail = { errcode, errmsg: body.errmsg ?? null };
      if (TOKEN_ERRCODES.has(errcode)) {
        this.invalidate(token);
        if (attempt === 0) continue;
        throw new GatewayError('SEND_TRANSIENT', `customer-service message refused twice for the access_token: errcode ${errcode}`, { transient: true, detail });
      }
      const transient = TRANSIENT_ERRCODES.has(errcode);
      // 45015: outside the 48-hour window (or the citizen unsubscribed): no retry can succeed.
      throw new GatewayError(transient ? 'SEND_TRANSIENT' : 'SEND_PERMANENT', `customer-service message refused: errcode ${errcode} ${String(body.errmsg ?? '')}`.trim(), {
        transient,
        detail,
      });
    }
  }
}
