import { execFile } from 'node:child_process';
import { chownSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort, tempDir } from './gateway.js';
import { portOpen } from './rabbit.js';

const run = promisify(execFile);

/** The shared server every test database lives on (scripts/ensure-services.mjs starts it). */
export const PG_HOST = '127.0.0.1';
export const PG_PORT = 5432;
export const PG_BIN = '/usr/lib/postgresql/15/bin';

/**
 * The server the tests make their databases on (a role that may CREATE DATABASE, no
 * database in the URL): the shared one on 127.0.0.1:5432, or TEST_PG_URL. Tests never stop it.
 */
export const PG_SERVER = (process.env.TEST_PG_URL ?? `postgres://postgres@${PG_HOST}:${PG_PORT}`).replace(/\/+$/, '');

function adminUrl(): string {
  return `${PG_SERVER}/postgres`;
}

export interface TestDatabase {
  url: string;
  name: string;
  drop(): Promise<void>;
}

async function admin<T>(url: string, f: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  c.on('error', () => {});
  await c.connect();
  try {
    return await f(c);
  } finally {
    await c.end().catch(() => {});
  }
}

/**
 * A fresh, empty database for one test run: `gw_<purpose>_<random>` on the
 * shared server (or on `server`, e.g. a PrivatePostgres). `drop()` forces out
 * whatever is still connected — a SIGKILLed gateway's sessions linger until
 * the server notices — so it never fails on leftovers.
 */
export async function createTestDatabase(purpose = 'test', server = adminUrl()): Promise<TestDatabase> {
  if (!(await portOpen(Number(new URL(server).port || PG_PORT), new URL(server).hostname))) {
    throw new Error(`PostgreSQL is not listening at ${new URL(server).host}: run 'node scripts/ensure-services.mjs' (or: pg_ctlcluster 15 main start)`);
  }
  const name = `gw_${purpose.replace(/[^a-z0-9]/gi, '').toLowerCase()}_${randomBytes(4).toString('hex')}`;
  await admin(server, (c) => c.query(`CREATE DATABASE ${name}`)).catch((err: Error) => {
    throw new Error(`cannot create a test database at ${new URL(server).host} as user postgres (trust auth expected): ${err.message}`);
  });
  const url = new URL(server);
  url.pathname = `/${name}`;
  let dropped = false;
  return {
    name,
    url: url.toString(),
    async drop() {
      if (dropped) return;
      dropped = true;
      await admin(server, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).catch(() => {});
    },
  };
}

/** One query on a database, for a test that looks at the store directly. */
export async function query<R extends pg.QueryResultRow = any>(url: string, text: string, params: unknown[] = []): Promise<R[]> {
  return admin(url, async (c) => (await c.query<R>(text, params)).rows);
}

/**
 * A private PostgreSQL 15 cluster for outage tests: its own data directory in
 * a temp dir, its own port and socket directory, trust auth. The shared
 * server on 5432 is never touched. initdb refuses to run as root, so the
 * server runs as `postgres`; the postmaster's PID (from postmaster.pid) is
 * what `stop()` signals if pg_ctl cannot.
 */
export class PrivatePostgres {
  readonly dir = tempDir('pg-');
  readonly data = join(this.dir, 'data');
  port = 0;
  private initialised = false;

  static available(): boolean {
    return existsSync(join(PG_BIN, 'initdb')) && existsSync(join(PG_BIN, 'pg_ctl'));
  }

  /** Server URL (database `postgres`); a test makes its own database with `createTestDatabase(purpose, pg.url)`. */
  get url(): string {
    return `postgres://postgres@${PG_HOST}:${this.port}/postgres`;
  }

  private async asPostgres(cmd: string, args: string[], timeoutMs = 60_000): Promise<string> {
    const { stdout, stderr } = await run('runuser', ['-u', 'postgres', '--', join(PG_BIN, cmd), ...args], { timeout: timeoutMs, cwd: this.dir });
    return stdout + stderr;
  }

  /** The postmaster's PID while it runs (first line of postmaster.pid). */
  get pid(): number | null {
    try {
      const n = Number(readFileSync(join(this.data, 'postmaster.pid'), 'utf8').split('\n')[0]);
      return Number.isInteger(n) && n > 0 ? n : null;
    } catch {
      return null;
    }
  }

  async start(timeoutMs = 30_000): Promise<void> {
    if (!this.initialised) {
      const { uid, gid } = await idOf('postgres');
      chownSync(this.dir, uid, gid);
      await this.asPostgres('initdb', ['-D', this.data, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8', '--locale=C']);
      this.initialised = true;
    }
    if (!this.port) this.port = await freePort();
    // Start-up costs little with fsync off and small buffers; the tests measure recovery, not durability of this cluster.
    const opts = `-p ${this.port} -k ${this.dir} -h 127.0.0.1 -c fsync=off -c shared_buffers=16MB -c max_connections=60`;
    await this.asPostgres('pg_ctl', ['-D', this.data, '-l', join(this.dir, 'log'), '-o', opts, '-w', '-t', String(Math.ceil(timeoutMs / 1000)), 'start'], timeoutMs + 5000).catch(
      (err: Error) => {
        throw new Error(`private PostgreSQL did not start: ${err.message}\n${this.log().slice(-2000)}`);
      },
    );
  }

  /** `fast` disconnects clients and shuts down cleanly; `immediate` is a crash (recovery on the next start). */
  async stop(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    const pid = this.pid;
    if (pid === null) return;
    try {
      await this.asPostgres('pg_ctl', ['-D', this.data, '-m', mode, '-w', '-t', '20', 'stop'], 30_000);
    } catch {
      // pg_ctl gave up or failed: end the postmaster by its PID.
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    const until = Date.now() + 10_000;
    while ((await portOpen(this.port, PG_HOST, 200)) && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
  }

  log(): string {
    try {
      return readFileSync(join(this.dir, 'log'), 'utf8');
    } catch {
      return '';
    }
  }

  async destroy(): Promise<void> {
    await this.stop('immediate').catch(() => {});
    rmSync(this.dir, { recursive: true, force: true });
  }
}

async function idOf(name: string): Promise<{ uid: number; gid: number }> {
  const uid = Number((await run('id', ['-u', name])).stdout.trim());
  const gid = Number((await run('id', ['-g', name])).stdout.trim());
  return { uid, gid };
}
