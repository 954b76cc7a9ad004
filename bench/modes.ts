import { rmSync } from 'node:fs';
import amqp from 'amqplib';
import pg from 'pg';
import { createVhost } from '../test/support/rabbit.js';
import { createTestDatabase, type TestDatabase } from '../test/support/postgres.js';
import { spawnGateway, tempDir, TEST_API_KEY, type GatewayProcess } from '../test/support/gateway.js';
import { brokerPid, brokerReady, cpuMs, httpLoad, percentile, procStatusMb } from './lib.js';
import { machineMeter, postgresMeter, type MachineLoad } from './machine.js';
import { openLoop, type OpenLoopResult } from './openloop.js';
import { ticketBody } from './bodies.js';
import { tailProbe, type TailBreakdown } from './tail.js';

/**
 * One store mode measured end to end on the compiled gateway: SQLite with one
 * instance, PostgreSQL with one or two instances on one database. Each run has a
 * vhost of its own and, on PostgreSQL, a database of its own (created here, dropped
 * after), so runs never see each other's rows or messages.
 */
export interface Mode {
  name: string;
  store: 'sqlite' | 'postgres';
  instances: number;
  /** Run another checkout's build instead of this one's (`--before=DIR`: the same modes on an earlier commit, in the same rounds). */
  root?: string;
}

export interface ModeSizes {
  /** Tickets in the closed-loop throughput phase. */
  throughput: number;
  /** Seconds of the open-loop phase at 1,000/s. */
  fixedSeconds: number;
}

export interface Latencies {
  p50: number;
  p90: number;
  p99: number;
  p999: number;
}

export interface FixedResult {
  rate: number;
  sent: number;
  failed: number;
  failures: OpenLoopResult['failures'];
  failureSamples: OpenLoopResult['failureSamples'];
  answeredPerSecond: number;
  accept: Latencies;
  consumed: Latencies;
  sendLagMaxMs: number;
  /** Where the time went in the gateways during this phase (the 1,000/s phase only). */
  tail?: TailBreakdown;
}

export interface ModeResult {
  /** Confirmed on tickets.created per second, 64 clients in a closed loop (as fast as answers come). */
  ticketsPerSecond: number;
  /** CPU µs per ticket in the throughput phase: each gateway, PostgreSQL (this database's backends and the server's writers), broker, load generator + consumer. */
  cpu: { gateways: number[]; postgres: number; broker: number; client: number };
  load: MachineLoad;
  fixed: FixedResult[];
  /** PostgreSQL backends of this database, sampled every 50 ms in the throughput phase: share of samples per state/wait event. */
  waits: [string, number][];
  /** Two instances: SIGKILL of one while its relay holds outbox rows → the last of those rows out again (on tickets.created or tickets.events) and deleted by the survivor. */
  takeover?: { stranded: number; ms: number; missing: number };
  /** Peak resident set of each gateway over the whole mode run (VmHWM), MB. */
  rssPeakMb: number[];
}

const CONCURRENCY = 64;
const HEADERS = { 'content-type': 'application/json', authorization: `Bearer ${TEST_API_KEY}` };

function lat(sorted: number[]): Latencies {
  return { p50: percentile(sorted, 50), p90: percentile(sorted, 90), p99: percentile(sorted, 99), p999: percentile(sorted, 99.9) };
}

async function until(pred: () => boolean | Promise<boolean>, ms: number, what: string, every = 20): Promise<void> {
  const end = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

export async function runMode(mode: Mode, sizes: ModeSizes): Promise<ModeResult> {
  const vhost = await createVhost(`bench-${mode.name}`);
  const db: TestDatabase | null = mode.store === 'postgres' ? await createTestDatabase('bench') : null;
  const dirs: string[] = [];
  const procs: GatewayProcess[] = [];
  const sql = db ? new pg.Client({ connectionString: db.url }) : null;
  const conn = await amqp.connect(vhost.url);
  try {
    for (let k = 0; k < mode.instances; k++) {
      const dir = tempDir('bench-');
      dirs.push(dir);
      const env: Record<string, string> = { AMQP_URL: vhost.url, DATA_DIR: dir, APP_API_KEYS: `bench:${TEST_API_KEY}`, APP_RATE_LIMIT: '1000000', LOG_LEVEL: 'warn' };
      if (db) env.DATABASE_URL = db.url;
      // One after the other: the first applies the migrations, the second finds them applied.
      const p = await spawnGateway(env, { compiled: true, root: mode.root });
      procs.push(p);
      await brokerReady(p.baseUrl);
    }
    await sql?.connect();
    const urls = procs.map((p) => `${p.baseUrl}/api/v1/tickets`);

    // First and last arrival per message id: a takeover republishes rows whose
    // confirm the dead instance had not yet recorded, and that later copy is the one
    // that ends the takeover.
    const first = new Map<string, number>();
    const last = new Map<string, number>();
    const ch = await conn.createChannel();
    await ch.prefetch(2000);
    // tickets.events too: the acknowledgement events are outbox rows as well, and a
    // takeover is over when the last of them is out.
    for (const q of ['tickets.created', 'tickets.events']) {
      await ch.consume(q, (m) => {
        if (!m) return;
        const id = m.properties.messageId as string;
        const now = performance.now();
        if (!first.has(id)) first.set(id, now);
        last.set(id, now);
        ch.ack(m);
      });
    }
    const allIn = (ids: string[] | Set<string>, ms: number) => until(() => [...ids].every((id) => first.has(id)), ms, 'tickets on tickets.created', 50);

    // Closed loop over all instances: 64 clients split between them.
    const closed = async (total: number, tag: string) => {
      const ids = new Set<string>();
      const per = Math.ceil(total / procs.length);
      await Promise.all(
        urls.map((url, k) =>
          httpLoad({ url, headers: HEADERS, body: (i) => ticketBody(i, `${tag}${k}`), total: per, concurrency: CONCURRENCY / procs.length, onAnswer: (_i, _s, b) => ids.add(JSON.parse(b).id) }),
        ),
      );
      return ids;
    };

    // Warm-up: JIT, page caches, the pools' connections, the broker's queues.
    await allIn(await closed(mode.store === 'sqlite' ? 2000 : 300, 'warm'), 120_000);

    // Throughput, with CPU of every process involved and of the machine as a whole.
    const pids = procs.map((p) => p.child.pid!);
    const broker = brokerPid();
    const at = { gw: pids.map(cpuMs), broker: broker ? cpuMs(broker) : NaN, client: cpuMs(process.pid) };
    const pgMeter = db ? postgresMeter(db.name) : null;
    const machine = machineMeter();
    const waits = new Map<string, number>();
    let sampling = !!sql;
    const sampler = (async () => {
      while (sampling) {
        const r = await sql!.query<{ s: string }>(
          `SELECT coalesce(wait_event_type || ':' || wait_event, CASE WHEN state = 'active' THEN 'running (no wait)' ELSE state END) AS s
             FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()`,
        );
        for (const { s } of r.rows) waits.set(s, (waits.get(s) ?? 0) + 1);
        await new Promise((res) => setTimeout(res, 50));
      }
    })();
    const t0 = performance.now();
    const ids = await closed(sizes.throughput, 'open');
    await allIn(ids, 300_000);
    const seconds = (Math.max(...[...ids].map((id) => first.get(id)!)) - t0) / 1000;
    sampling = false;
    await sampler;
    const n = ids.size;
    const gwMs = pids.map((p, k) => cpuMs(p) - at.gw[k]!);
    const brokerMs = broker ? cpuMs(broker) - at.broker : 0;
    const clientMs = cpuMs(process.pid) - at.client;
    const pgMs = pgMeter?.stop() ?? 0;
    const load = machine.stop(gwMs.reduce((a, b) => a + b, 0) + brokerMs + clientMs + pgMs);
    const perTicket = (ms: number) => (ms * 1000) / n;
    const totalWaits = [...waits.values()].reduce((a, b) => a + b, 0);

    // Open loop at fixed rates: 1,000/s (over PostgreSQL's ceiling, so its queue
    // grows for the whole phase: the phase is kept short), and half the rate this
    // run just reached in the closed loop, for the latency of a mode that keeps up.
    const fixed: FixedResult[] = [];
    for (const [rate, secs] of [
      [1000, sizes.fixedSeconds],
      [Math.max(5, Math.round(n / seconds / 2)), 5],
    ] as const) {
      const due = new Map<string, number>();
      const probe = rate === 1000 ? tailProbe(procs.map((p) => p.baseUrl)) : null;
      const r = await openLoop({ urls, headers: HEADERS, rate, total: Math.round(rate * secs), body: (i) => ticketBody(i, `fixed${rate}`), onAnswer: (_i, b, d) => due.set(JSON.parse(b).id, d) });
      const tail = await probe?.stop();
      await allIn([...due.keys()], 300_000);
      const consumed = [...due].map(([id, d]) => first.get(id)! - d).sort((a, b) => a - b);
      fixed.push({ rate, sent: Math.round(rate * secs), failed: r.failed, failures: r.failures, failureSamples: r.failureSamples, answeredPerSecond: r.answeredPerSecond, accept: lat(r.latencyMs), consumed: lat(consumed), sendLagMaxMs: r.sendLagMaxMs, tail });
    }

    let takeover: ModeResult['takeover'];
    if (db && procs.length > 1) takeover = await killOne(procs, urls, sql!, last, Math.max(20, Math.round(n / seconds)));

    return {
      ticketsPerSecond: n / seconds,
      cpu: { gateways: gwMs.map(perTicket), postgres: db ? perTicket(pgMs) : NaN, broker: perTicket(brokerMs), client: perTicket(clientMs) },
      load,
      fixed,
      waits: [...waits].sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, v / totalWaits]),
      takeover,
      rssPeakMb: pids.map((pid) => procStatusMb(pid, 'VmHWM')),
    };
  } finally {
    await conn.close().catch(() => {});
    await sql?.end().catch(() => {});
    for (const p of procs) {
      p.kill('SIGTERM');
      await p.exited;
    }
    await db?.drop().catch(() => {});
    await vhost.drop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
}

/**
 * Load both instances at the cluster's closed-loop rate, then SIGKILL the first at a
 * moment its relay holds outbox rows (taken, not yet confirmed and deleted): those
 * rows are stranded until their lease lapses and the survivor's relay takes them.
 * The time reported runs from the kill to the last of them arriving on
 * tickets.created (after the kill: a row the dead instance had published but not yet
 * deleted arrives twice, and the second copy is the survivor's).
 */
async function killOne(procs: GatewayProcess[], urls: string[], sql: pg.Client, last: Map<string, number>, rate: number): Promise<{ stranded: number; ms: number; missing: number }> {
  const victim = procs[0]!;
  // The instance id is `${hostname}:${pid}:${random}`: the pid finds the victim's rows.
  const owner = `%:${victim.child.pid}:%`;
  // Rows are held only from the relay's take to its confirmed delete, a few ms per
  // batch, so the kill waits (up to 8 s) for a moment the victim holds some.
  const load = openLoop({ urls, headers: HEADERS, rate, total: rate * 12, body: (i) => ticketBody(i, 'kill') });
  await new Promise((r) => setTimeout(r, 2000));
  // Only rows for the two queues consumed here (ticket.created, ticket.acknowledged).
  const mine = `owner LIKE $1 AND (routing_key LIKE 'ticket.created%' OR routing_key LIKE 'ticket.acknowledged%')`;
  const held = async () => (await sql.query(`SELECT count(*)::int AS n FROM outbox WHERE ${mine}`, [owner])).rows[0].n as number;
  const deadline = Date.now() + 8000;
  while ((await held()) === 0 && Date.now() < deadline);
  victim.kill('SIGKILL');
  const killedAt = performance.now();
  await victim.exited;
  const rows = (await sql.query<{ message_id: string }>(`SELECT message_id FROM outbox WHERE ${mine}`, [owner])).rows.map((r) => r.message_id);
  await load;
  if (rows.length === 0) return { stranded: 0, ms: NaN, missing: 0 };
  // Done when the survivor has confirmed and deleted every one of them. Arrivals
  // alone would end too early: a copy the victim handed to the broker just before
  // the kill can reach the consumer just after it.
  const left = async () => (await sql.query(`SELECT count(*)::int AS n FROM outbox WHERE message_id = ANY($1::text[])`, [rows])).rows[0].n as number;
  // Not an error if some stay: the report says how many were still there after 60 s.
  await until(async () => (await left()) === 0, 60_000, 'stranded rows', 10).catch(() => {});
  const missing = await left();
  const seen = rows.filter((id) => (last.get(id) ?? 0) > killedAt);
  return { stranded: rows.length, ms: Math.max(...seen.map((id) => last.get(id)!)) - killedAt, missing };
}
