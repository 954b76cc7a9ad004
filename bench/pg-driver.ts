/**
 * Which PostgreSQL driver the store uses, decided by measurement: the same
 * accept-like unit (BEGIN; advisory lock on the dedupe key; dedupe select; day
 * counter upsert; ticket insert; outbox insert; COMMIT) run N times with 32 units
 * in flight, with `pg` and with `postgres` (porsager), against a scratch database
 * created for the run and dropped after it. Prints units/s and this process's CPU
 * per unit (process.cpuUsage: user + system µs), the median of three rounds each.
 *
 * Only the chosen driver is a dependency; install the other for a run with
 * `npm install --no-save pg postgres`. Both are loaded by name at run time so the
 * project type-checks with either one absent.
 *
 *   node --import tsx bench/pg-driver.ts [postgres://postgres@127.0.0.1:5432/postgres] [units=3000] [sync|nosync]
 *
 * Every unit bumps the same day counter, whose row lock is held until the commit
 * is flushed, so with `sync` (the default, as the store runs) the rate is bound by
 * the server's WAL flush; `nosync` (synchronous_commit=off, for this bench only)
 * takes the flush out to show what the drivers themselves cost.
 */
import { randomBytes } from 'node:crypto';

const adminUrl = process.argv[2] ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const UNITS = Number(process.argv[3] ?? 3000);
const CONCURRENCY = 32;
const ROUNDS = 3;
const NOSYNC = process.argv[4] === 'nosync';

const SCHEMA = `
CREATE TABLE tickets (
  id text PRIMARY KEY, number text NOT NULL UNIQUE, channel text NOT NULL, citizen_key text NOT NULL,
  created_at bigint NOT NULL, respond_by bigint NOT NULL, matter text NOT NULL, body text NOT NULL,
  raw bytea NOT NULL, due_at bigint, due_kind text);
CREATE INDEX tickets_citizen ON tickets (citizen_key, created_at);
CREATE INDEX tickets_due ON tickets (due_at) WHERE due_at IS NOT NULL;
CREATE TABLE ticket_counters (day text PRIMARY KEY, last integer NOT NULL);
CREATE TABLE dedupe (channel text NOT NULL, key text NOT NULL, ticket_id text NOT NULL,
  first_seen bigint NOT NULL, last_seen bigint NOT NULL, PRIMARY KEY (channel, key));
CREATE TABLE outbox (seq bigserial PRIMARY KEY, routing_key text NOT NULL, message_id text NOT NULL, type text NOT NULL,
  headers text NOT NULL, body text NOT NULL, created_at bigint NOT NULL, ticket_ref text);
`;

const SQL = {
  lock: `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`,
  dedupe: `SELECT ticket_id, last_seen FROM dedupe WHERE channel = $1 AND key = $2`,
  counter: `INSERT INTO ticket_counters (day, last) VALUES ($1, 1) ON CONFLICT (day) DO UPDATE SET last = ticket_counters.last + 1 RETURNING last`,
  ticket: `INSERT INTO tickets (id, number, channel, citizen_key, created_at, respond_by, matter, body, raw, due_at, due_kind)
           VALUES ($1, $2, 'app', $3, $4, $5, $6, $7, $8, $9, 'warning')`,
  outbox: `INSERT INTO outbox (routing_key, message_id, type, headers, body, created_at, ticket_ref) VALUES ('ticket.created', $1, 'ticket.created', '{}', '', $2, $1)`,
};

interface Unit {
  id: string;
  key: string;
  body: string;
  raw: Buffer;
}

function makeUnit(i: number): Unit {
  const id = `t-${i}-${randomBytes(6).toString('hex')}`;
  const body = JSON.stringify({ id, content: 'Streetlight out at the corner of 5th and Main since Tuesday night.', i });
  return { id, key: `app:${id}`, body, raw: Buffer.from(body) };
}

interface Driver {
  name: string;
  unit(u: Unit, day: string): Promise<void>;
  end(): Promise<void>;
}

/** Loaded by a name TypeScript does not resolve: only the chosen driver is installed normally. */
async function load(name: string): Promise<any> {
  const mod = await import(name);
  return mod.default ?? mod;
}

async function pgDriver(url: string): Promise<Driver> {
  const pg = await load('pg');
  const pool = new pg.Pool({ connectionString: url, max: CONCURRENCY, ...(NOSYNC ? { options: '-c synchronous_commit=off' } : {}) });
  // Named statements: parsed once per connection, as the store would run them.
  const q = (c: any, name: keyof typeof SQL, values: unknown[]) => c.query({ name, text: SQL[name], values });
  return {
    name: 'pg',
    async unit(u, day) {
      const c = await pool.connect();
      try {
        await c.query('BEGIN');
        await q(c, 'lock', [u.key]);
        await q(c, 'dedupe', ['app', u.key]);
        const n = (await q(c, 'counter', [day])).rows[0].last as number;
        const now = Date.now();
        await q(c, 'ticket', [u.id, `${day}-${String(n).padStart(6, '0')}`, u.key, now, now + 86_400_000, 'streetlight', u.body, u.raw, now + 43_200_000]);
        await q(c, 'outbox', [u.id, now]);
        await c.query('COMMIT');
      } catch (err) {
        await c.query('ROLLBACK').catch(() => {});
        throw err;
      } finally {
        c.release();
      }
    },
    end: () => pool.end(),
  };
}

async function porsagerDriver(url: string): Promise<Driver> {
  const postgres = await load('postgres');
  const sql = postgres(url, { max: CONCURRENCY, onnotice: () => {}, ...(NOSYNC ? { connection: { synchronous_commit: 'off' } } : {}) });
  return {
    name: 'postgres',
    async unit(u, day) {
      await sql.begin(async (tx: any) => {
        await tx.unsafe(SQL.lock, [u.key], { prepare: true });
        await tx.unsafe(SQL.dedupe, ['app', u.key], { prepare: true });
        const n = (await tx.unsafe(SQL.counter, [day], { prepare: true }))[0].last as number;
        const now = Date.now();
        await tx.unsafe(SQL.ticket, [u.id, `${day}-${String(n).padStart(6, '0')}`, u.key, now, now + 86_400_000, 'streetlight', u.body, u.raw, now + 43_200_000], { prepare: true });
        await tx.unsafe(SQL.outbox, [u.id, now], { prepare: true });
      });
    },
    end: () => sql.end({ timeout: 5 }),
  };
}

async function admin(sqlText: string): Promise<void> {
  const pg = await load('pg');
  const c = new pg.Client({ connectionString: adminUrl });
  await c.connect();
  try {
    await c.query(sqlText);
  } finally {
    await c.end();
  }
}

async function round(make: (url: string) => Promise<Driver>, url: string, day: string): Promise<{ perSecond: number; cpuUs: number }> {
  const d = await make(url);
  try {
    // Warm the pool and the statement caches outside the measurement.
    await Promise.all(Array.from({ length: CONCURRENCY }, (_, i) => d.unit(makeUnit(-1 - i), `w${day}`)));
    const units = Array.from({ length: UNITS }, (_, i) => makeUnit(i));
    let next = 0;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < units.length) await d.unit(units[next++]!, day);
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    return { perSecond: UNITS / seconds, cpuUs: (cpu.user + cpu.system) / UNITS };
  } finally {
    await d.end();
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const db = `gw_bench_${randomBytes(4).toString('hex')}`;
  await admin(`CREATE DATABASE ${db}`);
  const url = new URL(adminUrl);
  url.pathname = `/${db}`;
  try {
    const pg = await load('pg');
    const c = new pg.Client({ connectionString: url.toString() });
    await c.connect();
    await c.query(SCHEMA);
    await c.end();
    const drivers: [string, (u: string) => Promise<Driver>][] = [
      ['pg', pgDriver],
      ['postgres', porsagerDriver],
    ];
    const results: Record<string, { perSecond: number[]; cpuUs: number[] }> = {};
    // Interleaved rounds, so a neighbour's load on the machine falls on both drivers alike.
    for (let r = 0; r < ROUNDS; r++) {
      for (const [name, make] of drivers) {
        const res = await round(make, url.toString(), `2026010${r}-${name}`);
        (results[name] ??= { perSecond: [], cpuUs: [] }).perSecond.push(res.perSecond);
        results[name].cpuUs.push(res.cpuUs);
        console.log(`round ${r + 1} ${name}: ${res.perSecond.toFixed(0)} units/s, ${res.cpuUs.toFixed(0)} µs CPU/unit`);
      }
    }
    console.log(`\n${UNITS} units, concurrency ${CONCURRENCY}, synchronous_commit ${NOSYNC ? 'off' : 'on'}, median of ${ROUNDS}`);
    console.log('| driver | units/s | client CPU µs/unit |');
    console.log('| --- | --- | --- |');
    for (const [name] of drivers) {
      const r = results[name]!;
      console.log(`| ${name} | ${median(r.perSecond).toFixed(0)} | ${median(r.cpuUs).toFixed(0)} |`);
    }
  } finally {
    await admin(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
  }
}

await main();
