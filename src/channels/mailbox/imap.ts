import { ImapFlow, type FetchMessageObject } from 'imapflow';
import type { Logger } from 'pino';
import type { ChannelLease, Intake } from '../types.js';
import { GatewayError, errorMessage, isTransient } from '../../errors.js';
import { parseMail, type MailParseResult } from './parse.js';

/**
 * IMAP intake. One connection, the mailbox selected, IDLE for new mail
 * (imapflow starts it by itself once the connection is quiet; polling with NOOP
 * where the server has no IDLE). Mail is read by UID above a high-water mark
 * kept per UIDVALIDITY in the channel's durable state, so mail that arrived
 * while the gateway was down or disconnected is read at the next session, and
 * nothing is read twice. Each message is: parsed → accepted (durable) → flagged
 * `\Seen $Ticketed` → high-water mark advanced. A crash between those steps
 * reads the message again, which the Message-ID dedupe turns into a duplicate.
 *
 * imapflow deadlocks when a command runs inside a `fetch` loop or an event
 * handler, so the loop only collects UIDs, and events only wake the loop.
 */

export const TICKETED_FLAG = '$Ticketed';
export const REJECTED_FLAG = '$Rejected';

/** UIDs listed per round; the rest are read in the next round. Bounds memory on a huge backlog. */
const BATCH = 200;
/** Bytes kept of a mail over MAIL_MAX_BYTES, for the rejected-input record. */
const OVERSIZE_KEEP = 64 * 1024;
/** imapflow's default waits 15 s of quiet before IDLE; new mail would wait that long. */
const AUTO_IDLE_DELAY = 500;

export interface ImapIntakeOptions {
  url: string;
  intake: Intake;
  logger: Logger;
  maxBytes: number;
  /** MAILBOX_ADDRESS: mail from it is our own coming back, never a ticket. */
  ownAddress: string | null;
  pollIntervalMs: number;
  reconnectMaxMs: number;
  /** Only the instance holding it reads the mailbox (several gateways share one store). */
  lease: ChannelLease;
}

interface ImapTarget {
  host: string;
  port: number;
  secure: boolean;
  user: string;
  pass: string;
  mailbox: string;
}

export function parseImapUrl(url: string): ImapTarget {
  const u = new URL(url);
  const secure = u.protocol === 'imaps:';
  const path = decodeURIComponent(u.pathname.replace(/^\/+/, ''));
  return {
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port: u.port ? Number(u.port) : secure ? 993 : 143,
    secure,
    user: decodeURIComponent(u.username),
    pass: decodeURIComponent(u.password),
    mailbox: path || 'INBOX',
  };
}

export class ImapIntake {
  private readonly target: ImapTarget;
  private stopping = false;
  private loop: Promise<void> | null = null;
  private client: ImapFlow | null = null;
  private wakeUp: (() => void) | null = null;
  private pending = false;
  private state: 'connecting' | 'connected' | 'disconnected' | 'stopped' = 'disconnected';
  private paused = false;
  private uidValidity: string | null = null;
  private lastUid = 0;
  private lastError: string | null = null;
  private reconnects = 0;
  /** Work on one message in progress: stop() waits for it so nothing is half-done. */
  private current: Promise<unknown> | null = null;

  constructor(private readonly opts: ImapIntakeOptions) {
    this.target = parseImapUrl(opts.url);
  }

  start(): void {
    // Another instance took the mailbox over (this one could not renew in time): end the session.
    this.opts.lease.onLost(() => {
      this.client?.close();
      this.wake();
    });
    this.loop ??= this.run();
  }

  status(): Record<string, unknown> {
    return {
      state: this.state,
      lease: this.opts.lease.held ? 'held' : 'waiting',
      mailbox: this.target.mailbox,
      paused: this.paused,
      uidValidity: this.uidValidity,
      lastUid: this.lastUid,
      reconnects: this.reconnects,
      lastError: this.lastError,
    };
  }

  /** Finish the message in hand, log out, stop. Idempotent. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wake();
    if (this.current) await this.current.catch(() => undefined);
    const c = this.client;
    if (c && c.usable) {
      await Promise.race([c.logout().catch(() => undefined), new Promise((r) => setTimeout(r, 2000).unref())]);
    }
    c?.close();
    await this.loop?.catch(() => undefined);
    // Handed back at once, so another instance reads on without waiting for the lease to lapse.
    await this.opts.lease.release();
    this.state = 'stopped';
  }

  private wake(): void {
    this.pending = true;
    const w = this.wakeUp;
    this.wakeUp = null;
    w?.();
  }

  /** Sleep until woken (new mail, close, stop) or `ms` passed. */
  private sleep(ms: number): Promise<void> {
    if (this.pending || this.stopping) {
      this.pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.wakeUp = null;
        resolve();
      }, ms);
      this.wakeUp = () => {
        clearTimeout(t);
        this.pending = false;
        resolve();
      };
    });
  }

  private async run(): Promise<void> {
    let attempt = 0;
    while (!this.stopping) {
      if (!this.opts.lease.held) {
        this.state = 'disconnected';
        if (!(await this.opts.lease.acquire(() => this.stopping))) break;
      }
      let connected = false;
      try {
        connected = await this.session();
      } catch (err) {
        this.lastError = errorMessage(err);
        this.opts.logger.warn({ err: this.lastError, code: (err as { code?: string }).code }, 'IMAP session ended');
      }
      this.client = null;
      if (this.stopping) break;
      this.state = 'disconnected';
      // Reconnect at once after a session that worked (a kicked or dropped
      // connection), then back off exponentially while the server stays away.
      if (connected) attempt = 0;
      const delay = attempt === 0 ? 100 : Math.min(this.opts.reconnectMaxMs, 250 * 2 ** attempt);
      attempt = Math.min(attempt + 1, 20);
      this.reconnects += 1;
      // Jitter so several gateways do not reconnect in step.
      await this.backoff(delay / 2 + Math.random() * (delay / 2));
    }
  }

  /** Wait `ms`, cut short only by stop(). */
  private backoff(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      const check = setInterval(() => this.stopping && done(), 50);
      function done(): void {
        clearTimeout(t);
        clearInterval(check);
        resolve();
      }
    });
  }

  /** One connection's life. Resolves true when it had connected. */
  private async session(): Promise<boolean> {
    this.state = 'connecting';
    const { host, port, secure, user, pass, mailbox } = this.target;
    const client = new ImapFlow({
      host,
      port,
      secure,
      auth: { user, pass },
      logger: false,
      autoIdleDelay: AUTO_IDLE_DELAY,
      missingIdleCommand: 'NOOP',
      // Restart IDLE now and then: NAT boxes drop silent connections.
      maxIdleTime: Math.min(this.opts.pollIntervalMs, 5 * 60_000),
      connectionTimeout: 30_000,
      greetingTimeout: 16_000,
      clientInfo: { name: '12345-intake-gateway' },
    });
    this.client = client;
    let closed = false;
    // Events only wake the loop: no IMAP command may run inside an imapflow event handler.
    client.on('error', (err: Error) => {
      this.lastError = err.message;
    });
    client.on('close', () => {
      closed = true;
      this.wake();
    });
    client.on('exists', () => this.wake());

    await client.connect();
    if (this.stopping) {
      await client.logout().catch(() => undefined);
      return true;
    }
    const box = await client.mailboxOpen(mailbox);
    this.state = 'connected';
    this.lastError = null;
    this.uidValidity = String(box.uidValidity);
    this.opts.logger.info({ mailbox, uidValidity: this.uidValidity, exists: box.exists }, 'IMAP mailbox open');
    const state = this.opts.intake.state('mailbox');
    const seenValidity = await state.get(`uidvalidity:${mailbox}`);
    if (seenValidity !== this.uidValidity) {
      if (seenValidity !== null) {
        // UIDs of the old UIDVALIDITY mean nothing now. Read the mailbox again;
        // flagged mail is skipped and the Message-ID dedupe makes the rest duplicates.
        this.opts.logger.warn({ mailbox, was: seenValidity, now: this.uidValidity }, 'UIDVALIDITY changed: re-reading the mailbox');
      }
      await state.set(`uidvalidity:${mailbox}`, this.uidValidity);
    }

    while (!this.stopping && !closed && client.usable && this.opts.lease.held) {
      const more = await this.drain(client, mailbox);
      if (this.stopping || closed) break;
      // A full batch or a paused intake comes back soon; otherwise IDLE (or the poll) wakes us.
      await this.sleep(this.paused ? 1000 : more ? 0 : this.opts.pollIntervalMs);
    }
    return true;
  }

  private cursorKey(mailbox: string, uidValidity: string): string {
    return `uid:${mailbox}:${uidValidity}`;
  }

  /** Read everything above the high-water mark. Returns true when more may be waiting. */
  private async drain(client: ImapFlow, mailbox: string): Promise<boolean> {
    const mb = client.mailbox;
    if (!mb) throw new GatewayError('VENDOR_ERROR', 'IMAP mailbox is not selected');
    const uidValidity = String(mb.uidValidity);
    const state = this.opts.intake.state('mailbox');
    const key = this.cursorKey(mailbox, uidValidity);
    this.uidValidity = uidValidity;
    const stored = await state.get(key);
    this.lastUid = stored ? Number(stored) : 0;

    if (this.opts.intake.backlogHigh()) {
      if (!this.paused) this.opts.logger.warn('outbox backlog high: IMAP fetching paused');
      this.paused = true;
      return false;
    }
    if (this.paused) this.opts.logger.info('outbox backlog back to normal: IMAP fetching resumed');
    this.paused = false;

    if (mb.exists === 0) return false;
    // List first, act after the loop: commands inside a fetch loop deadlock imapflow.
    const todo: { uid: number; size: number; done: boolean }[] = [];
    for await (const m of client.fetch(`${this.lastUid + 1}:*`, { uid: true, size: true, flags: true }, { uid: true })) {
      // `N:*` with N above the highest UID still returns the last message: skip it.
      if (m.uid <= this.lastUid) continue;
      const done = Boolean(m.flags && (m.flags.has(TICKETED_FLAG) || m.flags.has(REJECTED_FLAG)));
      todo.push({ uid: m.uid, size: m.size ?? 0, done });
    }
    todo.sort((a, b) => a.uid - b.uid);
    const batch = todo.slice(0, BATCH);
    for (const item of batch) {
      if (this.stopping) return false;
      if (this.opts.intake.backlogHigh()) {
        this.paused = true;
        return true;
      }
      if (!item.done) {
        const work = this.processOne(client, mailbox, uidValidity, item.uid, item.size);
        this.current = work;
        try {
          await work;
        } finally {
          this.current = null;
        }
      }
      this.lastUid = item.uid;
      await state.set(key, String(item.uid));
    }
    return todo.length > batch.length;
  }

  private async processOne(client: ImapFlow, mailbox: string, uidValidity: string, uid: number, size: number): Promise<void> {
    const log = this.opts.logger;
    const oversize = size > this.opts.maxBytes;
    let msg: FetchMessageObject | false;
    try {
      msg = await client.fetchOne(
        String(uid),
        oversize ? { uid: true, source: { start: 0, maxLength: OVERSIZE_KEEP }, internalDate: true } : { uid: true, source: true, internalDate: true },
        { uid: true },
      );
    } catch (err) {
      throw new GatewayError('VENDOR_ERROR', `IMAP fetch of UID ${uid} failed: ${errorMessage(err)}`, { transient: true, cause: err });
    }
    if (!msg || !msg.source) {
      // Expunged by someone else between the listing and the fetch: nothing to do.
      log.info({ uid }, 'message vanished before it could be read');
      return;
    }
    const raw = msg.source;
    const origin = { mailbox, uidValidity, uid };
    const result: MailParseResult = oversize
      ? { kind: 'reject', reason: 'too_large', detail: `mail is ${size} bytes, MAIL_MAX_BYTES is ${this.opts.maxBytes}; the first ${raw.length} bytes are kept` }
      : await parseMail(raw, origin, { maxBytes: this.opts.maxBytes, ownAddress: this.opts.ownAddress });

    let flag: string;
    if (result.kind === 'reject') {
      await this.opts.intake.reject({ channel: 'mailbox', reason: result.reason, detail: `${result.detail} (UID ${uid} in ${mailbox})`, raw });
      flag = REJECTED_FLAG;
      log.info({ uid, reason: result.reason }, 'mail not taken as a ticket');
    } else {
      if (result.repairedCharset) log.info({ uid, charset: result.repairedCharset }, 'unlabelled 8-bit mail decoded with a fallback charset');
      if (result.rewritten.length > 0) log.info({ uid, rewritten: result.rewritten }, 'mail rewritten before parsing');
      try {
        const r = await this.opts.intake.accept(result.inbound);
        log.debug({ uid, status: r.status }, 'mail accepted');
        // `rejected` here is the core's (no content at all): recorded, and the citizen asked for details.
        flag = r.status === 'rejected' ? REJECTED_FLAG : TICKETED_FLAG;
      } catch (err) {
        // STORE_UNAVAILABLE / SHUTTING_DOWN: leave the mail unflagged and the mark where it is.
        if (isTransient(err)) throw err;
        await this.opts.intake.reject({ channel: 'mailbox', reason: 'parse_error', detail: `${errorMessage(err)} (UID ${uid} in ${mailbox})`, raw });
        flag = REJECTED_FLAG;
      }
    }
    // The ticket (or the rejected record) is durable: now mark the mail. Never deleted.
    await client.messageFlagsAdd(String(uid), ['\\Seen', flag], { uid: true });
  }
}
