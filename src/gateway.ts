import express from 'express';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { ConsumeMessage } from 'amqplib';
import type { Config } from './config.js';
import { describeConfig, projectRoot } from './config.js';
import { systemClock, type Clock } from './clock.js';
import type { Channel, ChannelAdapter } from './channels/types.js';
import { buildAdapters } from './channels/index.js';
import { SqliteStore } from './store/sqlite/index.js';
import type { AttachmentFiles, Store } from './store/types.js';
import { deadlineFired } from './lifecycle.js';
import { StoreLease } from './leases.js';
import type { ChannelLease } from './channels/types.js';
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { AttachmentStore } from './store/attachments.js';
import { IntakeService } from './intake.js';
import { Broker, redact } from './publish/broker.js';
import { replyFailed } from './publish/messages.js';
import { ReplyMessage } from './publish/schemas.js';
import { asyncapiDocument } from './publish/asyncapi.js';
import { DeadlineScheduler } from './deadlines/scheduler.js';
import { OutboundDispatcher } from './outbound.js';
import { createMetrics, type Metrics } from './metrics.js';
import { loadRules } from './normalize/rules.js';
import { apiRouter } from './http/api.js';
import { ApiAccess } from './http/auth.js';
import { errorHandler, sendError } from './http/errors.js';
import { FastRoutes } from './http/fast.js';
import { ticketJsonSchema } from './ticket.js';
import { createLogger, recentErrorsOf } from './log.js';
import { OpsCounters } from './ops/counters.js';
import { OpsPage } from './ops/index.js';
import { GatewayError, errorMessage } from './errors.js';

/**
 * Exclusive work (IMAP, Telegram polling) moves to another instance within this
 * plus one retry period (a third of it) after its holder dies: under the 30 s the
 * contract allows.
 */
const LEASE_TTL = 15_000;

export interface GatewayOptions {
  clock?: Clock;
  logger?: Logger;
  /** Replace the adapters built from configuration (tests, benchmarks). */
  adapters?: ChannelAdapter[];
  /** A store opened by the caller (PostgreSQL); the embedded SQLite store in DATA_DIR otherwise. */
  store?: Store;
  /** Where attachments live when `store` is shared (every instance serves every file). */
  attachments?: AttachmentFiles;
  /** This instance's name in a shared store (see `openGateway`). */
  instanceId?: string;
}

/**
 * Wiring and the one shutdown path. Everything with a lifetime is started in
 * `start()` and stopped in `stop()`, in the order that keeps the promise:
 * stop taking input, finish what was taken, wait for broker confirms, close.
 */
export class Gateway {
  readonly store: Store;
  /** This process among the instances sharing a store: owner of the rows it claims and the leases it holds. */
  readonly instanceId: string;
  readonly attachments: AttachmentFiles;
  readonly intake: IntakeService;
  readonly broker: Broker;
  readonly deadlines: DeadlineScheduler;
  readonly outbound: OutboundDispatcher;
  readonly metrics: Metrics;
  /** The channels that are on; known once start() has loaded them. */
  adapters: ChannelAdapter[] = [];
  private readonly adapterMap = new Map<Channel, ChannelAdapter>();
  readonly logger: Logger;
  readonly app: express.Express;
  /** Hot routes answered ahead of Express; whatever they decline (or anything while closing) goes to `app`. */
  readonly fast: FastRoutes;
  private server: Server | null = null;
  private readonly givenAdapters: ChannelAdapter[] | null;
  private closing = false;
  private stopPromise: Promise<void> | null = null;
  private readonly clock: Clock;
  /** Per-minute counts for the operations page, fed by the metric increments. */
  readonly opsCounters: OpsCounters;
  /** The operations page, or null when OPS_USERS is empty (the page is off). */
  readonly ops: OpsPage | null;

  constructor(
    readonly config: Config,
    opts: GatewayOptions = {},
  ) {
    this.clock = opts.clock ?? systemClock;
    this.logger = opts.logger ?? createLogger(config.LOG_LEVEL);
    this.opsCounters = new OpsCounters(this.clock);
    this.metrics = createMetrics(this.opsCounters);
    this.instanceId = opts.instanceId ?? newInstanceId();
    this.store = opts.store ?? new SqliteStore(config.DATA_DIR, { sync: config.STORE_SYNC }, this.clock);
    this.attachments = opts.attachments ?? new AttachmentStore(config.DATA_DIR, config.ATTACHMENT_MAX_BYTES);
    const rules = loadRules(config.RULES_FILE ?? join(projectRoot(), 'config', 'rules.json'));
    this.intake = new IntakeService(this.store, this.attachments, config, rules, this.clock, this.logger, this.metrics);
    this.givenAdapters = opts.adapters ?? null;

    this.broker = new Broker(
      this.store,
      {
        url: config.AMQP_URL,
        window: config.PUBLISH_WINDOW,
        lingerMs: config.PUBLISH_LINGER,
        batch: config.PUBLISH_BATCH,
        reconnectMaxMs: config.AMQP_RECONNECT_MAX,
        confirmTimeoutMs: config.PUBLISH_CONFIRM_TIMEOUT,
        onReply: (m) => this.onReplyMessage(m),
      },
      this.logger,
      this.metrics,
    );
    this.store.onOutbox = () => this.broker.committed();
    const m = this.metrics;
    this.store.onCommit = (t) => {
      m.storeQueued.observe(t.queuedMs / 1000);
      m.storeCommit.observe(t.commitMs / 1000);
      m.storeDurable.observe(t.durableMs / 1000);
      m.storeBatch.observe(t.units);
    };
    this.store.onCheckpoint = (t) => m.storeCheckpoint.observe(t.ms / 1000);
    // Background trouble repeats every interval while it lasts: once a minute in the log is enough.
    let lastStoreWarning = -Infinity;
    this.store.onStoreWarning = (message) => {
      const now = this.clock.now();
      if (now - lastStoreWarning < 60_000) return;
      lastStoreWarning = now;
      this.logger.warn({ store: this.store.kind }, message);
    };
    // A shared store gets rows from other instances too: look every half second.
    const shared = this.store.kind !== 'sqlite';
    this.deadlines = new DeadlineScheduler(this.store, deadlineFired, this.clock, this.logger, this.metrics, shared ? 500 : undefined);
    this.outbound = new OutboundDispatcher(
      this.store,
      this.instanceId,
      this.adapterMap,
      config,
      this.clock,
      this.logger,
      this.metrics,
      shared ? 1000 : undefined,
    );
    this.intake.hooks = { deadlineAdded: (t) => this.deadlines.noteDue(t), outboundAdded: () => this.outbound.wake() };
    this.ops =
      config.OPS_USERS.size === 0
        ? null
        : new OpsPage({
            users: config.OPS_USERS,
            maxStreams: config.OPS_MAX_STREAMS,
            logger: this.logger,
            clock: this.clock,
            store: this.store,
            instanceId: this.instanceId,
            timezone: config.TIMEZONE,
            broker: () => ({ state: this.broker.state, lastError: this.broker.lastError }),
            adapters: () => this.adapters,
            counters: this.opsCounters,
            errors: recentErrorsOf(this.logger),
            outboundTotals: async () => (await this.metrics.outbound.get()).values,
          });
    this.app = this.buildApp();
    this.fast = new FastRoutes(this.logger, this.metrics, () => this.closing);
  }

  private buildApp(): express.Express {
    const app = express();
    app.disable('x-powered-by');
    // X-Forwarded-For is believed only from these peers, nearest first; req.ip (which
    // keys the web form's per-IP limit) is the first address not in the list.
    app.set('trust proxy', this.config.TRUST_PROXY);
    app.use((req, res, next) => {
      // Ops probes still answer while closing: /readyz then says 503 with its reasons.
      if (!this.closing || req.path === '/readyz' || req.path === '/healthz') return next();
      res.setHeader('Connection', 'close');
      sendError(res, 503, 'SHUTTING_DOWN', 'gateway is shutting down');
    });
    app.get('/healthz', (_req, res) => {
      res.json({ status: 'alive' });
    });
    app.get('/readyz', async (_req, res) => {
      const r = await this.readiness();
      res.status(r.ready ? 200 : 503).json(r);
    });
    if (this.config.METRICS) {
      app.get('/metrics', async (_req, res) => {
        this.metrics.outboxDepth.set(this.store.outboxDepth());
        this.metrics.openDeadlines.set(await this.store.openDeadlines().catch(() => Number.NaN));
        res.setHeader('Content-Type', this.metrics.registry.contentType);
        res.send(await this.metrics.registry.metrics());
      });
    }
    app.get('/schema/ticket.v1.json', (_req, res) => {
      res.setHeader('Content-Type', 'application/schema+json');
      res.send(JSON.stringify(ticketJsonSchema(), null, 2));
    });
    app.get('/asyncapi.json', (_req, res) => {
      res.json(asyncapiDocument());
    });
    // Without OPS_USERS no route is mounted: /ops answers the ordinary 404.
    if (this.ops) app.use(this.ops.router());
    return app;
  }

  async readiness(): Promise<{ ready: boolean; reasons: string[]; store: string; storeKind: string; leases?: string[]; broker: 'up' | 'down'; brokerError?: string; backlog: number; channels: Record<string, unknown> }> {
    const reasons: string[] = [];
    if (this.closing) reasons.push('shutting down');
    const storeErr = this.store.isClosed ? new GatewayError('STORE_CLOSED', 'store is closed') : await this.store.probe();
    if (storeErr) reasons.push(`store unusable: ${storeErr.message}`);
    const channels: Record<string, unknown> = {};
    for (const a of this.adapters) channels[a.channel] = a.status?.() ?? { on: true };
    return {
      ready: reasons.length === 0,
      reasons,
      store: storeErr ? 'unusable' : 'ok',
      storeKind: this.store.kind,
      // In a cluster: which exclusive work (IMAP reading, Telegram polling) this instance does now.
      ...(this.store.kind === 'sqlite' ? {} : { leases: [...this.leases.values()].filter((l) => l.held).map((l) => l.name) }),
      broker: this.broker.state,
      // Why it is down (a refused login, a missing vhost, nobody listening): the operator's first question.
      ...(this.broker.state === 'down' && this.broker.lastError ? { brokerError: this.broker.lastError } : {}),
      backlog: this.store.isClosed ? 0 : this.store.outboxDepth(),
      channels,
    };
  }

  private async onReplyMessage(msg: ConsumeMessage): Promise<void> {
    const fallbackId = msg.properties.messageId ?? 'unknown';
    let body: unknown;
    try {
      body = JSON.parse(msg.content.toString('utf8'));
    } catch {
      await this.rejectReply(null, fallbackId, { code: 'INPUT_INVALID', message: 'body is not valid JSON' });
      return;
    }
    const parsed = ReplyMessage.safeParse(body);
    if (!parsed.success) {
      await this.rejectReply(null, typeof (body as { replyId?: unknown })?.replyId === 'string' ? (body as { replyId: string }).replyId : fallbackId, {
        code: 'INPUT_INVALID',
        message: parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '),
      });
      return;
    }
    const { ticketId, replyId, text } = parsed.data;
    try {
      await this.intake.addReply(ticketId, replyId, text);
    } catch (err) {
      if (err instanceof GatewayError && err.code === 'NOT_FOUND') {
        await this.rejectReply(ticketId, replyId, { code: 'NOT_FOUND', message: `no ticket ${ticketId}` });
        return;
      }
      if (err instanceof GatewayError && err.code === 'REPLY_LIMIT') {
        await this.rejectReply(ticketId, replyId, { code: err.code, message: err.message });
        return;
      }
      throw err;
    }
  }

  /**
   * A tickets.replies message the gateway will never send: `reply.failed` with the code.
   * It names the ticket's channel when the ticket is known, else 'unknown' (never a guess).
   */
  private async rejectReply(ticketId: string | null, replyId: string, error: { code: string; message: string }): Promise<void> {
    this.logger.warn({ ticketId, replyId, ...error }, 'reply from tickets.replies refused');
    const ticket = ticketId ? ((await this.store.getTicket(ticketId))?.ticket ?? null) : null;
    await this.store.append({ outbox: [replyFailed(ticket, ticket ? ticket.channel : 'unknown', { ticketId, replyId, error })] });
  }

  private readonly leases = new Map<string, ChannelLease>();

  /** One lease object per name for this instance (the adapter asks for it by name again on stop). */
  private lease(name: string, logger: Logger): ChannelLease {
    let l = this.leases.get(name);
    if (!l) {
      l = new StoreLease(this.store, name, this.instanceId, LEASE_TTL, logger);
      this.leases.set(name, l);
    }
    return l;
  }

  get port(): number {
    return (this.server?.address() as AddressInfo | null)?.port ?? 0;
  }

  async start(): Promise<void> {
    this.logger.info({ config: describeConfig(this.config) }, 'starting');
    this.adapters = this.givenAdapters ?? (await buildAdapters(this.config, this.logger));
    for (const a of this.adapters) {
      this.adapterMap.set(a.channel, a);
      if (a.receiptMode === 'active') this.intake.activeReceipts.add(a.channel);
    }
    const router = express.Router();
    this.app.use(router);
    // One for the app channel and the ticket API together: a key's rate covers all its routes.
    const access = new ApiAccess(this.config, () => this.clock.now());
    for (const a of this.adapters) {
      const log = this.logger.child({ channel: a.channel });
      await a.start({ intake: this.intake, config: this.config, logger: log, clock: this.clock, http: router, fast: this.fast, access, lease: (name) => this.lease(name, log) });
      this.logger.info({ channel: a.channel, receipts: a.receiptMode }, 'channel on');
    }
    this.app.use(
      '/api/v1',
      apiRouter({ intake: this.intake, attachments: this.attachments, access, jsonLimit: this.config.HTTP_JSON_LIMIT }),
    );
    this.app.use((_req, res) => sendError(res, 404, 'NOT_FOUND', 'no such resource'));
    this.app.use(errorHandler(this.logger, this.metrics));

    this.broker.start();
    this.deadlines.start();
    this.outbound.start();

    const server = createServer({ requestTimeout: 30_000, headersTimeout: 10_000, keepAliveTimeout: this.config.HTTP_KEEPALIVE_TIMEOUT }, (req, res) => {
      if (!this.fast.handle(req, res)) this.app(req, res);
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.config.HTTP_PORT, this.config.HTTP_HOST, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.logger.info({ port: this.port, host: this.config.HTTP_HOST, broker: redact(this.config.AMQP_URL) }, 'gateway listening');
  }

  /** The one shutdown path. Idempotent: every caller gets the same promise. */
  stop(): Promise<void> {
    this.stopPromise ??= this.doStop();
    return this.stopPromise;
  }

  private async doStop(): Promise<void> {
    const started = Date.now();
    const grace = this.config.SHUTDOWN_GRACE;
    const left = () => Math.max(100, grace - (Date.now() - started));
    this.logger.info('stopping: no new input');
    this.closing = true;
    // Live page streams would hold the HTTP server open until the grace runs out.
    this.ops?.stop();
    await Promise.allSettled(
      this.adapters.map((a) =>
        Promise.race([a.stop(), sleep(left())]).catch((err: unknown) => this.logger.warn({ channel: a.channel, err: errorMessage(err) }, 'channel stop failed')),
      ),
    );
    this.intake.beginStop();
    const server = this.server;
    if (server) {
      const closed = new Promise<void>((r) => server.close(() => r()));
      server.closeIdleConnections();
      await Promise.race([closed, sleep(Math.min(2000, left()))]);
      server.closeAllConnections();
    }
    this.deadlines.stop();
    await this.outbound.stop(Math.min(2000, left()));
    await this.broker.stop(left());
    await this.store.close();
    this.logger.info({ ms: Date.now() - started, unpublished: 'kept in the journal' }, 'stopped');
  }
}

/** Unique per process and start: owner of the rows and leases it takes in a shared store. */
function newInstanceId(): string {
  return `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
}

/**
 * A gateway on the store its configuration names: PostgreSQL when DATABASE_URL is
 * set (the driver loads only then; the schema is created or migrated first, safely
 * when several instances start together), else the embedded SQLite store in DATA_DIR.
 */
export async function openGateway(config: Config, opts: GatewayOptions = {}): Promise<Gateway> {
  if (!config.DATABASE_URL || opts.store) return new Gateway(config, opts);
  const { PostgresStore } = await import('./store/postgres/index.js');
  const instanceId = opts.instanceId ?? newInstanceId();
  const logger = opts.logger ?? createLogger(config.LOG_LEVEL);
  const store = await PostgresStore.open({ url: config.DATABASE_URL, clock: opts.clock ?? systemClock, instanceId, logger: logger.child({ store: 'postgres' }) });
  return new Gateway(config, { ...opts, logger, instanceId, store, attachments: store.attachmentStore(config.ATTACHMENT_MAX_BYTES) });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}
