import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { loadConfig, projectRoot, type ConfigInput } from '../../src/config.js';
import { Gateway, openGateway, type GatewayOptions } from '../../src/gateway.js';
import { createTestDatabase, type TestDatabase } from './postgres.js';
import { Collector, createVhost, portOpen, type Vhost } from './rabbit.js';
import { QUEUES } from '../../src/publish/topology.js';
import { SqliteStore } from '../../src/store/sqlite/index.js';

/** The intake client `test` (APP_API_KEYS): creates tickets, reads only its own. */
/** Which store a test gateway runs on. */
export type StoreChoice = 'sqlite' | 'postgres';

export const TEST_API_KEY = 'test-key-0123456789';
/** The downstream system `ops` (DOWNSTREAM_API_KEYS): reads any ticket, posts replies. */
export const TEST_DOWNSTREAM_KEY = 'ops-key-9876543210';

export function tempDir(prefix = 'gw-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface TestGateway {
  gateway: Gateway;
  baseUrl: string;
  amqpUrl: string;
  dataDir: string;
  vhost: Vhost;
  created: Collector;
  events: Collector;
  rejected: Collector;
  repliesFailed: Collector;
  /** Stop the gateway only (data dir and vhost stay), then start a new one on them. */
  restart(overrides?: ConfigInput): Promise<void>;
  /** Stop everything this helper started. Idempotent. */
  stop(): Promise<void>;
  /**
   * POST JSON as the two parties do in production: creating a ticket (`/api/v1/tickets`)
   * as the intake client `test`, anything else (replies) as the downstream system `ops`.
   * An `authorization` header overrides the key.
   */
  post(path: string, body: unknown, headers?: Record<string, string>): Promise<Response>;
  /** GET as the downstream system `ops` (it may read any ticket); `authorization` overrides. */
  get(path: string, headers?: Record<string, string>): Promise<Response>;
}

export interface TestGatewayOptions extends GatewayOptions {
  vhost?: Vhost;
  dataDir?: string;
  /** Do not open collectors (e.g. the broker is deliberately unreachable). */
  noCollectors?: boolean;
  /** `postgres`: a database of its own on the test server (DATABASE_URL), dropped at stop. */
  storeKind?: StoreChoice;
}

function baseOverrides(amqpUrl: string, dataDir: string): ConfigInput {
  return {
    AMQP_URL: amqpUrl,
    DATA_DIR: dataDir,
    HTTP_PORT: 0,
    HTTP_HOST: '127.0.0.1',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    APP_API_KEYS: `test:${TEST_API_KEY}`,
    DOWNSTREAM_API_KEYS: `ops:${TEST_DOWNSTREAM_KEY}`,
    AMQP_RECONNECT_MAX: '1s',
    STORE_SYNC: 'normal',
  };
}

/**
 * An in-process gateway on a temp data dir, an ephemeral port and its own vhost,
 * with consumers on the contract's queues.
 */
export async function startTestGateway(overrides: ConfigInput = {}, opts: TestGatewayOptions = {}): Promise<TestGateway> {
  const vhost = opts.vhost ?? (await createVhost());
  const ownsDir = !opts.dataDir;
  const dataDir = opts.dataDir ?? tempDir();
  const database: TestDatabase | null = opts.storeKind === 'postgres' ? await createTestDatabase('gw') : null;
  let current = overrides;
  const make = (o: ConfigInput) =>
    openGateway(loadConfig({}, { ...baseOverrides(vhost.url, dataDir), ...(database ? { DATABASE_URL: database.url } : {}), ...o }), opts);
  let gateway = await make(current);
  await gateway.start();
  const url = () => `http://127.0.0.1:${gateway.port}`;

  const collectors = opts.noCollectors
    ? null
    : await Promise.all([QUEUES.created, QUEUES.events, QUEUES.rejected, QUEUES.repliesFailed].map((q) => Collector.open(vhost.url, q)));

  let stopped = false;
  const tg: TestGateway = {
    get gateway() {
      return gateway;
    },
    get baseUrl() {
      return url();
    },
    amqpUrl: vhost.url,
    dataDir,
    vhost,
    created: collectors?.[0] as Collector,
    events: collectors?.[1] as Collector,
    rejected: collectors?.[2] as Collector,
    repliesFailed: collectors?.[3] as Collector,
    async restart(more: ConfigInput = {}) {
      await gateway.stop();
      current = { ...current, ...more };
      gateway = await make(current);
      await gateway.start();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await gateway.stop().catch(() => {});
      for (const c of collectors ?? []) await c.close();
      if (!opts.vhost) await vhost.drop();
      await database?.drop().catch(() => {});
      if (ownsDir) rmSync(dataDir, { recursive: true, force: true });
    },
    post(path, body, headers = {}) {
      const key = /^\/api\/v1\/tickets(\?|$)/.test(path) ? TEST_API_KEY : TEST_DOWNSTREAM_KEY;
      return fetch(`${url()}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${key}`, ...headers },
        body: typeof body === 'string' ? body : JSON.stringify(body),
      });
    },
    get(path, headers = {}) {
      return fetch(`${url()}${path}`, { headers: { authorization: `Bearer ${TEST_DOWNSTREAM_KEY}`, ...headers } });
    },
  };
  return tg;
}

/** Wait until the gateway's broker link is up (after a broker restart, say). */
export async function waitBrokerUp(gateway: Gateway, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (gateway.broker.state !== 'up') {
    if (Date.now() > until) throw new Error('broker link did not come up');
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function waitUntil(pred: () => boolean | Promise<boolean>, timeoutMs = 15_000, what = 'condition'): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface GatewayProcess {
  child: ChildProcess;
  port: number;
  baseUrl: string;
  output: () => string;
  /** Resolves with the exit code (or signal name). */
  exited: Promise<number | string>;
  kill(signal?: NodeJS.Signals): void;
}

/** The `--flags` between `node` and the script in a checkout's `npm start` (`scripts.start`). */
export function startNodeFlags(root: string): string[] {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts?: { start?: string } };
  const words = (pkg.scripts?.start ?? '').trim().split(/\s+/);
  if (words[0] !== 'node') throw new Error(`${root}: npm start is not "node <flags> <script>": ${pkg.scripts?.start}`);
  return words.slice(1).filter((w) => w.startsWith('--'));
}

/**
 * The gateway as a separate process, exactly as `npm start` runs it but through
 * tsx, for signal and crash tests. Killed by PID when the test ends.
 */
export async function spawnGateway(
  env: Record<string, string>,
  opts: { compiled?: boolean; nodeArgs?: string[]; /** Another checkout's build (the bench's before/after). */ root?: string } = {},
): Promise<GatewayProcess> {
  const port = Number(env.HTTP_PORT ?? (await freePort()));
  const root = opts.root ?? projectRoot();
  // compiled: run the `npm run build` output, as `npm start` does (benchmarks measure that, not the tsx loader).
  // Either way with the node flags of that checkout's start script (its heap limit).
  const args = [...startNodeFlags(root), ...(opts.nodeArgs ?? []), ...(opts.compiled ? ['dist/src/main.js'] : ['--import', 'tsx', 'src/main.ts'])];
  const child = spawn(process.execPath, args, {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root', HTTP_HOST: '127.0.0.1', LOG_LEVEL: 'info', ...env, HTTP_PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  const until = Date.now() + 20_000;
  while (!(await portOpen(port))) {
    if (child.exitCode !== null || Date.now() > until) {
      child.kill('SIGKILL');
      throw new Error(`gateway process did not start:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    child,
    port,
    baseUrl: `http://127.0.0.1:${port}`,
    output: () => out,
    exited,
    kill(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
  };
}

/** The SQLite file under a gateway, for faults only (a read-only store): tests read data through the Store interface. */
export function sqliteDb(g: Gateway) {
  if (!(g.store instanceof SqliteStore)) throw new Error('this test needs the SQLite store');
  return g.store.journal.db;
}
