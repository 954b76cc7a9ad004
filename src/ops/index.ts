import express from 'express';
import type { Request, Response } from 'express';
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { sendError } from '../http/errors.js';
import { errorMessage } from '../errors.js';
import { basicAuth } from './auth.js';
import { opsPage } from './page.js';
import { OpsSnapshots, type OpsSources } from './snapshot.js';

/** How often open pages get a snapshot. */
const TICK_MS = 1000;
/**
 * A stream whose client reads slower than we write holds its unsent frames in
 * memory; past this many bytes it is closed (the page reconnects and starts fresh).
 */
const MAX_BUFFERED = 1 << 20;
const REALM = 'Basic realm="12345 operations", charset="UTF-8"';

export interface OpsOptions extends OpsSources {
  users: Map<string, string>;
  maxStreams: number;
  logger: Logger;
}

/**
 * The operations page: `GET /ops` (the page) and `GET /ops/events` (server-sent
 * events, one snapshot a second). One timer serves every open stream, so the
 * cost is one snapshot per second whatever the number of viewers; streams are
 * capped (OPS_MAX_STREAMS), dropped when their client goes, and all closed by
 * stop() on the gateway's shutdown path.
 */
export class OpsPage {
  private readonly streams = new Set<Response>();
  private readonly snapshots: OpsSnapshots;
  private readonly authenticate: (authorization: string | undefined) => string | null;
  private timer: NodeJS.Timeout | null = null;
  private ticking = false;
  private stopped = false;

  constructor(private readonly opts: OpsOptions) {
    this.snapshots = new OpsSnapshots(opts);
    this.authenticate = basicAuth(opts.users);
  }

  get openStreams(): number {
    return this.streams.size;
  }

  router(): express.Router {
    const r = express.Router();
    r.use('/ops', (req, res, next) => {
      // Live figures and error lines: no cache, proxy or browser history may keep a copy.
      res.setHeader('Cache-Control', 'no-store');
      if (this.authenticate(req.headers.authorization) === null) {
        res.setHeader('WWW-Authenticate', REALM);
        return sendError(res, 401, 'AUTH_FAILED', 'operations page: name and password required');
      }
      next();
    });
    r.get('/ops', (_req, res) => {
      const nonce = randomBytes(16).toString('base64');
      // Everything is inline and nonce-bound; the page talks only to its own origin.
      res.setHeader(
        'Content-Security-Policy',
        `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'nonce-${nonce}'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
      );
      res.setHeader('X-Content-Type-Options', 'nosniff');
      res.setHeader('Referrer-Policy', 'no-referrer');
      res.type('html').send(opsPage(nonce));
    });
    r.get('/ops/snapshot', async (_req, res, next) => {
      try {
        res.json(await this.snapshots.snapshot());
      } catch (err) {
        next(err);
      }
    });
    r.get('/ops/events', (req, res) => this.openStream(req, res));
    return r;
  }

  private openStream(req: Request, res: Response): void {
    if (this.stopped) return sendError(res, 503, 'SHUTTING_DOWN', 'gateway is shutting down');
    if (this.streams.size >= this.opts.maxStreams) {
      res.setHeader('Retry-After', '5');
      return sendError(res, 503, 'OPS_STREAMS_FULL', `at most ${this.opts.maxStreams} live operations streams at once`);
    }
    res.status(200);
    res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
    res.setHeader('Connection', 'keep-alive');
    res.setHeader('X-Accel-Buffering', 'no');
    res.flushHeaders();
    // The browser reconnects after this long when the stream breaks (a restart, a full cap).
    res.write('retry: 3000\n\n');
    req.socket.setNoDelay(true);
    // A stream is a long request: the server's request timeout must not cut it.
    req.socket.setTimeout(0);
    this.streams.add(res);
    // 'close' on the response: the client went away (or we ended it). The request's own
    // 'close' fires as soon as its (empty) body is read, so it says nothing here.
    res.on('close', () => this.streams.delete(res));
    void this.snapshots
      .snapshot()
      .then((s) => this.send(res, s))
      .catch(() => undefined);
    this.timer ??= setInterval(() => void this.tick(), TICK_MS);
  }

  private send(res: Response, snapshot: unknown): void {
    if (res.writableEnded || res.destroyed) return;
    if (res.writableLength > MAX_BUFFERED) {
      this.streams.delete(res);
      res.end();
      return;
    }
    res.write(`event: snapshot\ndata: ${JSON.stringify(snapshot)}\n\n`);
  }

  private async tick(): Promise<void> {
    if (this.streams.size === 0) {
      if (this.timer) clearInterval(this.timer);
      this.timer = null;
      return;
    }
    // A slow store must not pile up ticks: the next one waits for this one.
    if (this.ticking) return;
    this.ticking = true;
    try {
      const s = await this.snapshots.snapshot();
      for (const res of this.streams) this.send(res, s);
    } catch (err) {
      this.opts.logger.warn({ code: 'OPS_SNAPSHOT_FAILED', err: errorMessage(err) }, 'operations snapshot failed');
    } finally {
      this.ticking = false;
    }
  }

  /** Closes every stream and refuses new ones. Idempotent. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const res of this.streams) res.end();
    this.streams.clear();
  }
}
