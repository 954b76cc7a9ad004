import amqp from 'amqplib';
import type { ChannelModel, ConfirmChannel, Channel as AmqpChannel, ConsumeMessage } from 'amqplib';
import type { Logger } from 'pino';
import type { OutboxMessage, Store } from '../store/types.js';
import type { Metrics } from '../metrics.js';
import { EXCHANGE, QUEUES, declareTopology } from './topology.js';
import { errorMessage } from '../errors.js';

export interface BrokerOptions {
  url: string;
  /** Unconfirmed publishes in flight at most. */
  window: number;
  /** Longest wait for more rows while publishes are unconfirmed (Nagle-style); 0 = none. */
  lingerMs: number;
  /** This many ready rows go out at once. */
  batch: number;
  reconnectMaxMs: number;
  /**
   * A message not acked this long after its first publish (no answer, or a nack on
   * every retry) means the link no longer takes messages: the relay drops it and
   * publishes everything unconfirmed again on a new one.
   */
  confirmTimeoutMs: number;
  /** Handles one message from `tickets.replies`; the message is acked after it resolves, requeued if it throws. */
  onReply?: (msg: ConsumeMessage) => Promise<void>;
}

interface InFlight {
  row: OutboxMessage;
  sentAt: number;
}

/**
 * The outbox relay. Reads journaled messages in order and publishes them on a
 * confirm channel with at most `window` unconfirmed; a message leaves the outbox
 * only after the broker confirmed it. A nack or a return (mandatory publish that
 * nothing took) puts the row back for a retry; a lost connection resends
 * everything unconfirmed after reconnecting. Nothing is ever dropped: the
 * consumer side sees at-least-once, deduped by messageId.
 */
export class Broker {
  private conn: ChannelModel | null = null;
  private pub: ConfirmChannel | null = null;
  private consumer: AmqpChannel | null = null;
  private inflight = new Map<number, InFlight>();
  /** Each row published on this link and not yet acked (in flight, or nacked and waiting to go again): when it was first sent. */
  private unacked = new Map<number, number>();
  private retry: OutboxMessage[] = [];
  private returned = new Set<string>();
  private confirmedSeqs: number[] = [];
  private deleteScheduled = false;
  private pumping = false;
  private blocked = false;
  private stopped = false;
  private connecting = false;
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private lingerTimer: NodeJS.Timeout | null = null;
  private confirmWatch: NodeJS.Timeout | null = null;
  private pumpScheduled = false;
  private pumpAgain = false;
  private drainWaiters: (() => void)[] = [];
  private consumerTag: string | null = null;
  private repliesInFlight = new Set<Promise<void>>();
  /** Why the last connect failed (or the link dropped), as shown on /readyz; null while up. */
  lastError: string | null = null;
  private readonly urls: string[];
  /** The node to try first. */
  private urlIndex = 0;
  connectedAt: number | null = null;
  /** When each failure reason was last logged, for rate-limiting (cleared on connect). */
  private failureLogged = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly store: Store,
    private readonly opts: BrokerOptions,
    private readonly logger: Logger,
    private readonly metrics: Metrics,
  ) {
    this.urls = opts.url.split(',').map((u) => u.trim()).filter(Boolean);
  }

  get state(): 'up' | 'down' {
    return this.pub ? 'up' : 'down';
  }

  get inFlight(): number {
    return this.inflight.size;
  }

  start(): void {
    void this.connect();
  }

  /** Publish what is ready, now (once per turn however often it is asked: a confirm frame acks many). */
  wake(): void {
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  /**
   * New rows are on disk (or a confirm made room). With nothing awaiting a confirm they
   * go out at once; otherwise they wait until PUBLISH_BATCH are ready, the last confirm
   * is in, or PUBLISH_LINGER has passed, whichever is first. The broker's cost per
   * message falls with the number that arrive together (raw amqplib here: one at a time
   * ≈240 µs of broker CPU each, fifty together ≈120 µs); under open load this saved
   * 10–15 % of its CPU per ticket. At low load nothing waits.
   */
  committed(): void {
    if (this.opts.lingerMs <= 0 || this.inflight.size === 0 || this.retry.length > 0 || this.store.readyCount() >= this.opts.batch) return this.wake();
    this.lingerTimer ??= setTimeout(() => {
      this.lingerTimer = null;
      this.pump();
    }, this.opts.lingerMs);
  }

  /**
   * `AMQP_URL` may list the nodes of a RabbitMQ cluster. Each attempt starts at the
   * node last used and goes round the list once; a link that was lost starts at the
   * next node, since its own just went away (quorum queues live on every node, so
   * the same messages are there).
   */
  private async connect(): Promise<void> {
    if (this.stopped || this.connecting || this.conn) return;
    this.connecting = true;
    try {
      for (let k = 0; k < this.urls.length && !this.stopped && !this.conn; k++) {
        const i = (this.urlIndex + k) % this.urls.length;
        if (await this.connectTo(this.urls[i]!)) {
          this.urlIndex = i;
          return;
        }
      }
      this.scheduleReconnect();
    } finally {
      this.connecting = false;
    }
  }

  /** One node: true once the link is up (or the relay stopped meanwhile). */
  private async connectTo(url: string): Promise<boolean> {
    let conn: ChannelModel | null = null;
    try {
      conn = await amqp.connect(withHeartbeat(url), { clientProperties: { connection_name: 'intake-gateway' }, timeout: 5000 });
      conn.on('error', (err: Error) => {
        // The reason a live link is closed (CONNECTION_FORCED, a missed heartbeat) stays on /readyz until it returns.
        this.lastError = connectFailure(err, url).reason;
        this.logger.warn({ err: errorMessage(err) }, 'broker connection error');
      });
      conn.on('close', () => this.onClose(conn!));
      conn.on('blocked', (reason: string) => {
        this.blocked = true;
        this.logger.warn({ reason }, 'broker blocked publishing (resource alarm)');
      });
      conn.on('unblocked', () => {
        this.blocked = false;
        this.wake();
      });
      const pub = await conn.createConfirmChannel();
      pub.on('error', (err: Error) => this.logger.warn({ err: errorMessage(err) }, 'broker channel error'));
      pub.on('close', () => {
        // A channel-level error (e.g. precondition failed) closes the channel but
        // not the connection; reconnecting the whole link is the simplest recovery.
        if (this.conn === conn) void conn!.close().catch(() => {});
      });
      pub.on('return', (msg: ConsumeMessage) => {
        const id = msg.properties.messageId as string | undefined;
        if (id) this.returned.add(id);
      });
      pub.on('drain', () => {
        const w = this.drainWaiters;
        this.drainWaiters = [];
        for (const f of w) f();
      });
      await declareTopology(pub);
      if (this.stopped) {
        await conn.close().catch(() => {});
        return true;
      }
      // Everything taken before and not confirmed is published again on this link. Handed
      // back before the link is in use: released later, it would also hand back rows
      // already published on it (then published twice, by whichever relay takes them).
      await this.store.releaseOutbox();
      this.conn = conn;
      this.pub = pub;
      const failedAttempts = this.attempt;
      this.attempt = 0;
      this.lastError = null;
      this.failureLogged.clear();
      this.connectedAt = Date.now();
      this.metrics.brokerUp.set(1);
      this.watchConfirms(conn);
      this.logger.info({ url: redact(url), failedAttempts }, 'broker connected');
      this.wake();
      // Not awaited: basic.consume on a quorum queue that is electing a leader can wait
      // for it, and publishing need not. A consumer that cannot start costs the link.
      const linked = conn;
      if (this.opts.onReply)
        this.startConsumer(linked).catch((err: unknown) => {
          this.logger.warn({ err: errorMessage(err) }, 'reply consumer did not start; reconnecting');
          if (this.conn === linked) void linked.close().catch(() => {});
        });
      return true;
    } catch (err) {
      const failure = connectFailure(err, url);
      this.lastError = failure.reason;
      this.logConnectFailure(failure, url);
      if (conn) await conn.close().catch(() => {});
      return false;
    }
  }

  /**
   * A wrong password or a missing vhost must show in the log, yet a broker that is away
   * for an hour is retried every AMQP_RECONNECT_MAX: each reason is logged when it first
   * appears and then at most once per CONNECT_FAILURE_LOG_EVERY_MS, with the count of
   * attempts that failed the same way in between.
   */
  private logConnectFailure(f: ConnectFailure, url: string): void {
    const now = Date.now();
    const seen = this.failureLogged.get(f.reason);
    if (seen && now - seen.at < CONNECT_FAILURE_LOG_EVERY_MS) {
      seen.suppressed++;
      return;
    }
    // Reasons can carry addresses (one per DNS answer): keep the map small.
    if (!seen && this.failureLogged.size >= 32) this.failureLogged.clear();
    this.logger.warn(
      { url: redact(url), code: f.code, reason: f.reason, attempt: this.attempt + 1, sameSinceLastLog: seen?.suppressed ?? 0 },
      'broker connect failed; journaling and retrying',
    );
    this.failureLogged.set(f.reason, { at: now, suppressed: 0 });
  }

  private async startConsumer(conn: ChannelModel): Promise<void> {
    const ch = await conn.createChannel();
    ch.on('error', (err: Error) => this.logger.warn({ err: errorMessage(err) }, 'reply consumer channel error'));
    await ch.prefetch(64);
    const onReply = this.opts.onReply!;
    const { consumerTag } = await ch.consume(QUEUES.replies, (msg) => {
      if (!msg) return;
      const p = onReply(msg)
        .then(() => ch.ack(msg))
        .catch((err: unknown) => {
          this.logger.warn({ err: errorMessage(err) }, 'reply not stored; requeued');
          // Requeue after a pause so a store outage does not spin.
          setTimeout(() => {
            try {
              ch.nack(msg, false, true);
            } catch {
              // Channel gone: the broker requeues unacked messages itself.
            }
          }, 1000).unref();
        })
        .finally(() => this.repliesInFlight.delete(p));
      this.repliesInFlight.add(p);
    });
    this.consumer = ch;
    this.consumerTag = consumerTag;
  }

  /**
   * AMQP gives a publish no deadline: a confirm that never comes holds its outbox row
   * (its lease renewed all the while) and a window slot for as long as the link lives,
   * and heartbeats keep a link alive whose queues no longer confirm. A link can also
   * nack the same message on every retry: seen on RabbitMQ 3.10 after the node holding
   * a quorum queue's leader was killed, where the channel went on nacking while the
   * queue took publishes from new connections. Each row's first publish is remembered
   * until its ack; a few times per timeout the oldest is checked, and past the timeout
   * the link is given up like a lost one (the next connect starts at the next node).
   * Not while the broker blocks publishing for a resource alarm: a new link would be
   * blocked the same way, and the alarm is logged.
   */
  private watchConfirms(conn: ChannelModel): void {
    if (this.confirmWatch) clearInterval(this.confirmWatch);
    const every = Math.max(50, Math.min(1000, Math.floor(this.opts.confirmTimeoutMs / 4)));
    this.confirmWatch = setInterval(() => {
      if (this.conn !== conn || this.blocked) return;
      const first = this.unacked.entries().next().value as [number, number] | undefined;
      if (!first) return;
      const waitedMs = Math.round(performance.now() - first[1]);
      if (waitedMs < this.opts.confirmTimeoutMs) return;
      const unconfirmed = this.unacked.size;
      const nacked = this.retry.length;
      this.lastError = `CONFIRM_TIMEOUT: ${unconfirmed} publishes not acked (${nacked} of them nacked), the oldest sent ${waitedMs} ms ago`;
      this.logger.warn(
        { unconfirmed, nacked, oldestSeq: first[0], waitedMs, url: redact(this.urls[this.urlIndex] ?? '') },
        'broker link does not ack publishes; dropping it and publishing again on a new one',
      );
      this.metrics.publishRetries.inc({ reason: 'confirm_timeout' }, unconfirmed);
      // Counted above: not again as lost with the connection.
      this.inflight.clear();
      this.onClose(conn);
      // A broker that stopped confirming may not answer connection.close either.
      const closing = setTimeout(() => (conn.connection as unknown as { stream?: { destroy(): void } }).stream?.destroy(), 5000);
      closing.unref();
      void conn
        .close()
        .catch(() => {})
        .finally(() => clearTimeout(closing));
    }, every);
    this.confirmWatch.unref();
  }

  private onClose(conn: ChannelModel): void {
    if (this.conn !== conn) return;
    if (this.confirmWatch) clearInterval(this.confirmWatch);
    this.confirmWatch = null;
    this.conn = null;
    this.urlIndex = (this.urlIndex + 1) % this.urls.length;
    this.pub = null;
    this.consumer = null;
    this.consumerTag = null;
    this.metrics.brokerUp.set(0);
    // Everything unconfirmed is sent again from the journal after reconnecting.
    if (this.inflight.size) this.metrics.publishRetries.inc({ reason: 'connection_lost' }, this.inflight.size);
    this.inflight.clear();
    this.unacked.clear();
    this.retry = [];
    // Hand back what this relay took, so an instance still linked to a broker publishes it now.
    this.handBack();
    this.returned.clear();
    const w = this.drainWaiters;
    this.drainWaiters = [];
    for (const f of w) f();
    if (!this.stopped) {
      this.logger.warn('broker connection lost; journaling until it returns');
      this.scheduleReconnect();
    }
  }

  /** Rows this relay took and will not publish (all of them, or `seqs`) go back to the outbox for any relay. */
  private handBack(seqs?: number[]): void {
    if (this.store.isClosed) return;
    this.store.releaseOutbox(seqs).catch((err: unknown) => {
      // Not lost: the rows' lease lapses and they are taken again.
      this.logger.warn({ err: errorMessage(err), rows: seqs?.length ?? 'all' }, 'could not hand back outbox rows; they return when their lease lapses');
    });
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.reconnectTimer) return;
    const base = Math.min(this.opts.reconnectMaxMs, 250 * 2 ** Math.min(this.attempt, 10));
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    this.attempt++;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      void this.connect();
    }, Math.min(delay, this.opts.reconnectMaxMs));
  }

  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    if (this.lingerTimer) {
      clearTimeout(this.lingerTimer);
      this.lingerTimer = null;
    }
    void this.pumpRows()
      .catch((err: unknown) => {
        this.logger.error({ err: errorMessage(err) }, 'outbox relay failed; retrying');
        setTimeout(() => this.wake(), 1000).unref();
      })
      .finally(() => {
        this.pumping = false;
        this.metrics.outboxDepth.set(this.store.outboxDepth());
        // Asked while this pump ran (a commit, a confirm): go again.
        if (this.pumpAgain) {
          this.pumpAgain = false;
          this.wake();
        }
      });
  }

  private async pumpRows(): Promise<void> {
    while (this.pub && !this.blocked && !this.stopped && this.inflight.size < this.opts.window) {
      const room = this.opts.window - this.inflight.size;
      const rows = this.retry.length ? this.retry.splice(0, room) : await this.store.takeOutbox(Math.min(room, 500));
      if (rows.length === 0) break;
      if (!this.pub) {
        // The link went while the rows were read, perhaps after the loss handed back what
        // was taken: these go back too, or their lease would be renewed with nobody
        // publishing them.
        this.handBack(rows.map((r) => r.seq));
        break;
      }
      let full = false;
      for (let i = 0; i < rows.length; i++) {
        const row = rows[i]!;
        if (this.inflight.has(row.seq)) continue;
        if (!this.publishRow(row)) {
          // Socket buffer full: what was read and not written waits with the retries.
          this.retry.push(...rows.slice(i + 1));
          full = true;
          break;
        }
      }
      if (full) {
        this.drainWaiters.push(() => this.wake());
        break;
      }
    }
  }

  /** False when the socket buffer is full: wait for 'drain'. */
  private publishRow(row: OutboxMessage): boolean {
    const pub = this.pub!;
    const now = performance.now();
    this.inflight.set(row.seq, { row, sentAt: now });
    if (!this.unacked.has(row.seq)) this.unacked.set(row.seq, now);
    return pub.publish(
      EXCHANGE,
      row.routingKey,
      Buffer.from(row.body, 'utf8'),
      {
        persistent: true,
        mandatory: true,
        contentType: 'application/json',
        contentEncoding: 'utf-8',
        messageId: row.messageId,
        type: row.type,
        timestamp: Math.floor(row.createdAt / 1000),
        headers: row.headers,
      },
      (err) => this.onConfirm(pub, row, err),
    );
  }

  private onConfirm(pub: ConfirmChannel, row: OutboxMessage, err: unknown): void {
    if (pub !== this.pub) return; // a confirm from a connection we already gave up on
    const f = this.inflight.get(row.seq);
    this.inflight.delete(row.seq);
    const returned = this.returned.delete(row.messageId);
    if (err || returned) {
      this.metrics.publishRetries.inc({ reason: returned ? 'returned' : 'nack' });
      this.logger.warn({ messageId: row.messageId, routingKey: row.routingKey, reason: returned ? 'returned' : 'nack' }, 'publish not accepted; retrying');
      this.retry.push(row);
      if (!this.retryTimer) {
        this.retryTimer = setTimeout(() => {
          this.retryTimer = null;
          this.wake();
        }, 500);
        this.retryTimer.unref();
      }
    } else {
      if (f) this.metrics.confirmLatency.observe((performance.now() - f.sentAt) / 1000);
      this.metrics.published.inc({ type: row.type });
      this.unacked.delete(row.seq);
      this.confirmedSeqs.push(row.seq);
      if (!this.deleteScheduled) {
        this.deleteScheduled = true;
        setImmediate(() => this.flushDeletes());
      }
    }
    // A confirm frees window room; what waits for it is published like a fresh commit.
    this.committed();
    if (this.inflight.size === 0) {
      const w = this.idleWaiters;
      this.idleWaiters = [];
      for (const fn of w) fn();
    }
  }

  private flushDeletes(): void {
    this.deleteScheduled = false;
    const seqs = this.confirmedSeqs;
    this.confirmedSeqs = [];
    if (seqs.length === 0 || this.store.isClosed) return;
    // With the next group commit: no transaction (and no fsync) of its own.
    this.store.confirmOutbox(seqs).catch((err: unknown) => {
      // Not fatal: the rows are published again later (at-least-once).
      this.logger.warn({ err: errorMessage(err) }, 'could not clear confirmed outbox rows');
    });
  }

  private idleWaiters: (() => void)[] = [];

  /** Resolves when nothing is waiting for a confirm (or after `ms`). */
  async drain(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline && this.pub && (this.inflight.size > 0 || this.retry.length > 0 || (await this.store.hasUntaken()))) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 50);
        this.idleWaiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Stop consuming, wait for confirms up to `graceMs`, close. Idempotent. */
  async stop(graceMs: number): Promise<void> {
    if (this.consumer && this.consumerTag) {
      await this.consumer.cancel(this.consumerTag).catch(() => {});
      await Promise.race([Promise.allSettled([...this.repliesInFlight]), sleep(Math.min(graceMs, 2000))]);
    }
    await this.drain(graceMs);
    this.stopped = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    if (this.confirmWatch) clearInterval(this.confirmWatch);
    this.flushDeletes();
    const conn = this.conn;
    this.conn = null;
    this.pub = null;
    this.metrics.brokerUp.set(0);
    if (conn) await conn.close().catch(() => {});
  }
}

/**
 * A link whose peer vanished without closing it (a network partition, a node that
 * lost power) is only noticed by AMQP heartbeats: without them the relay goes on
 * taking outbox rows into a dead socket for minutes. 10 s unless the URL names one.
 */
export function withHeartbeat(url: string): string {
  try {
    const u = new URL(url);
    if (!u.searchParams.has('heartbeat')) u.searchParams.set('heartbeat', String(HEARTBEAT_SECONDS));
    return u.toString();
  } catch {
    return url;
  }
}
const HEARTBEAT_SECONDS = 10;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

const CONNECT_FAILURE_LOG_EVERY_MS = 5 * 60_000;

export interface ConnectFailure {
  /** The AMQP reply name (ACCESS_REFUSED, NOT_ALLOWED, …) or the socket error code (ECONNREFUSED, …). */
  code: string;
  /** One line for operators, without credentials. */
  reason: string;
}

/**
 * What went wrong, in the broker's own words where it gave any. amqplib drops the
 * server's text when the broker closes the handshake in answer to connection.open
 * (RabbitMQ's 530 NOT_ALLOWED "vhost … not found" or "access to vhost … refused"):
 * that shape is recognised and named after the vhost in the URL.
 */
export function connectFailure(err: unknown, url: string): ConnectFailure {
  const msg = errorMessage(err);
  const reply = /\d{3} \(([A-Z-]+)\) with message "([^"]*)"/.exec(msg);
  if (reply) {
    const code = reply[1]!.replace(/-/g, '_');
    if (code === 'ACCESS_REFUSED') return { code, reason: 'ACCESS_REFUSED: login refused (wrong user name or password, or no such user)' };
    const text = reply[2]!.replace(/^[A-Z_]+ - /, '').replace(/\. For details see the broker logfile\.?$/, '');
    return { code, reason: redact(`${code}: ${text}`).slice(0, 300) };
  }
  if (/^Expected ConnectionOpenOk; got <ConnectionClose/.test(msg)) {
    return { code: 'NOT_ALLOWED', reason: `NOT_ALLOWED: vhost "${vhostOf(url)}" not found, or this user may not use it` };
  }
  const sysCode = err && typeof err === 'object' && typeof (err as { code?: unknown }).code === 'string' ? (err as { code: string }).code : null;
  if (sysCode) return { code: sysCode, reason: redact(msg).slice(0, 300) };
  return { code: 'BROKER_UNAVAILABLE', reason: redact(msg).slice(0, 300) };
}

function vhostOf(url: string): string {
  try {
    const path = new URL(url).pathname;
    // amqp://host and amqp://host/ both mean the default vhost "/".
    return path.length > 1 ? decodeURIComponent(path.slice(1)) : '/';
  } catch {
    return '?';
  }
}

export function redact(url: string): string {
  // Global: AMQP_URL may list several nodes, each with its own password.
  return url.replace(/\/\/([^:@/]*):[^@/]*@/g, '//$1:***@');
}
