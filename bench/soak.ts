import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import amqp from 'amqplib';
import pg from 'pg';
import { createVhost } from '../test/support/rabbit.js';
import { createTestDatabase, type TestDatabase } from '../test/support/postgres.js';
import { spawnGateway, tempDir, TEST_API_KEY } from '../test/support/gateway.js';
import { brokerReady, cpuMs, fmt, httpLoad, percentile, procStatusMb } from './lib.js';
import { formatFailed, openLoop, type OpenLoopResult } from './openloop.js';
import { ticketBody } from './bodies.js';

/**
 * The steady state of a hotline nobody answers in time: a fixed open-loop rate for
 * many minutes with the contract's 3-minute message deadline, so from minute 2.4
 * every ticket's warning and then its breach fire while new tickets keep coming.
 * Reported per window: POST → 202 and POST → consumed percentiles, the gateway's
 * CPU per ticket, RSS, event-loop delay, deadline events published, and the store's
 * size; then the first windows against the last, which is what "flat" means.
 */
export interface SoakOptions {
  store: 'sqlite' | 'postgres';
  rate: number;
  minutes: number;
  /** Window length, s (default 30). */
  windowSeconds?: number;
  /** Another checkout's build to soak instead of this one's (a before/after). */
  root?: string;
}

export interface SoakWindow {
  fromS: number;
  answered: number;
  accept: { p50: number; p99: number; p999: number };
  consumedP99: number;
  gatewayCpuUsPerTicket: number;
  rssMb: number;
  loopDelayMaxMs: number;
  deadlineEvents: number;
  storeMb: number;
}

export interface SoakResult {
  windows: SoakWindow[];
  failed: number;
  failures: OpenLoopResult['failures'];
  failureSamples: OpenLoopResult['failureSamples'];
  sendLagMaxMs: number;
  /** All answers: POST → 202 p50/p99/p99.9, ms. */
  accept: { p50: number; p99: number; p999: number };
  consumed: { p50: number; p99: number; p999: number };
  rssPeakMb: number;
}

const HEADERS = { 'content-type': 'application/json', authorization: `Bearer ${TEST_API_KEY}` };


export async function soak(o: SoakOptions): Promise<SoakResult> {
  const windowMs = (o.windowSeconds ?? 30) * 1000;
  const vhost = await createVhost(`soak-${o.store}`);
  const db: TestDatabase | null = o.store === 'postgres' ? await createTestDatabase('soak') : null;
  const dataDir = tempDir('soak-');
  const env: Record<string, string> = { AMQP_URL: vhost.url, DATA_DIR: dataDir, APP_API_KEYS: `bench:${TEST_API_KEY}`, APP_RATE_LIMIT: '1000000', LOG_LEVEL: 'warn' };
  if (db) env.DATABASE_URL = db.url;
  let proc: Awaited<ReturnType<typeof spawnGateway>> | null = null;
  let conn: amqp.ChannelModel | null = null;
  const sql = db ? new pg.Client({ connectionString: db.url }) : null;
  try {
    const gw = (proc = await spawnGateway(env, { compiled: true, root: o.root }));
    const broker = (conn = await amqp.connect(vhost.url));
    await brokerReady(gw.baseUrl);
    await sql?.connect();
    const pid = gw.child.pid!;
    const arrived = new Map<string, number>();
    let deadlineEvents = 0;
    const ch = await broker.createChannel();
    await ch.prefetch(2000);
    await ch.consume('tickets.created', (m) => {
      if (!m) return;
      arrived.set(m.properties.messageId as string, performance.now());
      ch.ack(m);
    });
    await ch.consume('tickets.events', (m) => {
      if (!m) return;
      if (m.fields.routingKey.startsWith('ticket.deadline.')) deadlineEvents++;
      ch.ack(m);
    });
    const url = `${gw.baseUrl}/api/v1/tickets`;
    await httpLoad({ url, headers: HEADERS, body: (i) => ticketBody(i, 'soakwarm'), total: 2000, concurrency: 32 });

    const storeMb = async () =>
      sql
        ? Number((await sql.query<{ n: string }>('SELECT pg_database_size(current_database()) AS n')).rows[0]!.n) / 2 ** 20
        : Number(execFileSync('du', ['-sk', dataDir]).toString().split('\t')[0]) / 1024;
    const loopMax = async () => {
      const text = await (await fetch(`${gw.baseUrl}/metrics`)).text();
      return Number(/^gateway_nodejs_eventloop_lag_max_seconds (\S+)$/m.exec(text)?.[1] ?? NaN) * 1000;
    };

    const total = Math.round(o.rate * o.minutes * 60);
    const per: { lat: number[]; ids: [string, number][] }[] = [];
    const t0 = performance.now() + 20;
    const marks: { at: number; cpu: number; rss: number; loop: number; events: number; store: number }[] = [];
    await loopMax();
    marks.push({ at: t0, cpu: cpuMs(pid), rss: procStatusMb(pid, 'VmRSS'), loop: NaN, events: deadlineEvents, store: await storeMb() });
    let sampling = true;
    const sampler = (async () => {
      for (let k = 1; sampling; k++) {
        const wait = t0 + k * windowMs - performance.now();
        await new Promise((r) => setTimeout(r, Math.max(0, wait)));
        if (!sampling) break;
        marks.push({ at: performance.now(), cpu: cpuMs(pid), rss: procStatusMb(pid, 'VmRSS'), loop: await loopMax(), events: deadlineEvents, store: await storeMb() });
      }
    })();
    const r = await openLoop({
      urls: [url],
      headers: HEADERS,
      rate: o.rate,
      total,
      body: (i) => ticketBody(i, 'soak'),
      onAnswer: (_i, body, due) => {
        const w = Math.floor((due - t0) / windowMs);
        const slot = (per[w] ??= { lat: [], ids: [] });
        slot.lat.push(performance.now() - due);
        slot.ids.push([(JSON.parse(body) as { id: string }).id, due]);
      },
    });
    sampling = false;
    await sampler;
    const rssPeakMb = procStatusMb(pid, 'VmHWM');
    const allIds = per.flatMap((w) => w.ids);
    const end = Date.now() + 120_000;
    while (allIds.some(([id]) => !arrived.has(id)) && Date.now() < end) await new Promise((res) => setTimeout(res, 200));

    const windows: SoakWindow[] = [];
    for (let w = 0; w < per.length && w + 1 < marks.length; w++) {
      const lat = per[w]!.lat.sort((a, b) => a - b);
      const consumed = per[w]!.ids.map(([id, due]) => (arrived.get(id) ?? Infinity) - due).sort((a, b) => a - b);
      const a = marks[w]!;
      const b = marks[w + 1]!;
      windows.push({
        fromS: (w * windowMs) / 1000,
        answered: lat.length,
        accept: { p50: percentile(lat, 50), p99: percentile(lat, 99), p999: percentile(lat, 99.9) },
        consumedP99: percentile(consumed, 99),
        gatewayCpuUsPerTicket: ((b.cpu - a.cpu) * 1000) / Math.max(1, lat.length),
        rssMb: b.rss,
        loopDelayMaxMs: b.loop,
        deadlineEvents: b.events - a.events,
        storeMb: b.store,
      });
    }
    const allLat = per.flatMap((w) => w.lat).sort((a, b) => a - b);
    const allConsumed = allIds.map(([id, due]) => (arrived.get(id) ?? Infinity) - due).sort((a, b) => a - b);
    return {
      windows,
      failed: r.failed,
      failures: r.failures,
      failureSamples: r.failureSamples,
      sendLagMaxMs: r.sendLagMaxMs,
      accept: { p50: percentile(allLat, 50), p99: percentile(allLat, 99), p999: percentile(allLat, 99.9) },
      consumed: { p50: percentile(allConsumed, 50), p99: percentile(allConsumed, 99), p999: percentile(allConsumed, 99.9) },
      rssPeakMb,
    };
  } finally {
    await conn?.close().catch(() => {});
    await sql?.end().catch(() => {});
    proc?.kill('SIGTERM');
    await proc?.exited;
    await db?.drop().catch(() => {});
    await vhost.drop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

export function formatSoak(o: SoakOptions, r: SoakResult): string[] {
  const lines = [
    `soak ${o.store}: ${fmt(o.rate)}/s for ${o.minutes} min, open loop, 3-minute deadlines nobody answers (warnings from 2.4 min, breaches from 3 min); ${formatFailed(r)}, sender late ≤ ${fmt(r.sendLagMaxMs, 1)} ms`,
    `  whole run: POST → 202 p50/p99/p99.9 ${fmt(r.accept.p50, 1)} / ${fmt(r.accept.p99, 1)} / ${fmt(r.accept.p999, 1)} ms; POST → consumed ${fmt(r.consumed.p50, 1)} / ${fmt(r.consumed.p99, 1)} / ${fmt(r.consumed.p999, 1)} ms; peak RSS ${fmt(r.rssPeakMb, 0)} MB`,
    '  from s | answered | 202 p50 / p99 / p99.9 ms | consumed p99 ms | gateway CPU µs/ticket | RSS MB | loop delay max ms | deadline events | store MB',
  ];
  for (const w of r.windows) {
    lines.push(
      `  ${String(w.fromS).padStart(6)} | ${fmt(w.answered).padStart(8)} | ${fmt(w.accept.p50, 1)} / ${fmt(w.accept.p99, 1)} / ${fmt(w.accept.p999, 1)} | ${fmt(w.consumedP99, 1)} | ${fmt(w.gatewayCpuUsPerTicket)} | ${fmt(w.rssMb, 0)} | ${fmt(w.loopDelayMaxMs, 1)} | ${fmt(w.deadlineEvents)} | ${fmt(w.storeMb, 1)}`,
    );
  }
  return lines;
}

// `node --import tsx bench/soak.ts [sqlite|postgres] [rate] [minutes] [checkout]`: one soak on its own.
if (import.meta.url === `file://${process.argv[1]}`) {
  const store = process.argv[2] === 'postgres' ? 'postgres' : 'sqlite';
  const opts: SoakOptions = { store, rate: Number(process.argv[3] ?? 400), minutes: Number(process.argv[4] ?? 10), root: process.argv[5] };
  const r = await soak(opts);
  console.log(formatSoak(opts, r).join('\n'));
}
