import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { createVhost } from '../test/support/rabbit.js';
import { freePort } from '../test/support/gateway.js';
import { cpuMeter, fmt, httpLoad, rawConfirmedPublish } from './lib.js';
import { machineMeter, type MachineLoad } from './machine.js';
import { formatTail } from './tail.js';
import { formatSoak, soak } from './soak.js';
import { formatFailed } from './openloop.js';
import { runMode, type Mode, type ModeResult, type ModeSizes } from './modes.js';
import { projectRoot } from '../src/config.js';
import { benchDeadlines } from './deadlines.js';
import { benchSms, smsLine, SMS_CHARS, type SmsWindowResult } from './sms.js';
import { benchKannel, KANNEL_MISSING } from './kannel.js';
import { ticketBody } from './bodies.js';

/**
 * `npm run bench`: the app API on SQLite (one instance) and on PostgreSQL (one and
 * two instances on one database), measured against baselines taken in the same run
 * on the same machine and broker: raw amqplib confirmed publishing to a quorum
 * queue, and a bare Express 5 JSON endpoint. The modes and bare Express run three
 * times, interleaved, and each figure is the median of the three, because the
 * machine is shared and one run can land on a busy minute; the machine's load
 * during each run is printed beside the figures.
 *
 * `--quick`: one round, smaller sizes, no million-deadline run (for development).
 * `--scale=x` scales the message counts; `--modes=sqlite,pg1,pg2` picks modes;
 * `--before=DIR` runs every mode also on DIR's build, interleaved.
 * `--modes-only` leaves out the SMS, deadline and soak sections. The soak (a fixed
 * rate with deadlines firing, bench/soak.ts) runs on both stores at 400/s for 10
 * minutes each (2 with --quick); `--soak=sqlite`, `--soak-minutes=`, `--soak-rate=`
 * change that, `--soak-only` runs nothing else, `--no-soak` leaves it out.
 * `--sms-only` runs only the raw baseline and the SMS section, which runs the
 * gateway and, when it is installed, Kannel (bench/kannel.ts) on the same test SMSC
 * at deliver_sm windows 1 and 32, interleaved per round. The report is also
 * written to bench/results/.
 */
const QUICK = process.argv.includes('--quick');
const USER_SCALE = Number(process.argv.find((a) => a.startsWith('--scale='))?.slice(8) ?? 1);
const SCALE = USER_SCALE * (QUICK ? 0.4 : 1);
const ROUNDS = QUICK ? 1 : 3;
const N = Math.round(10_000 * SCALE);
const CONCURRENCY = 64;
const ONLY = process.argv.find((a) => a.startsWith('--modes='))?.slice(8).split(',');
const BEFORE = process.argv.find((a) => a.startsWith('--before='))?.slice(9);
const MODES: Mode[] = (
  [
    { name: 'sqlite', store: 'sqlite', instances: 1 },
    { name: 'pg1', store: 'postgres', instances: 1 },
    { name: 'pg2', store: 'postgres', instances: 2 },
  ] satisfies Mode[]
)
  .filter((m) => !ONLY || ONLY.includes(m.name))
  // --before=DIR: each mode also on DIR's build (an earlier commit, built with `npm run build`
  // there), run just before this build's in every round, so before and after share the machine's minute.
  .flatMap((m): Mode[] => (BEFORE ? [{ ...m, name: `${m.name}-before`, root: BEFORE }, m] : [m]));
const SKIP_REST = process.argv.includes('--modes-only');
const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
// The soak: a fixed rate for many minutes with deadlines firing (bench/soak.ts).
const SOAK_ONLY = process.argv.includes('--soak-only');
const SOAK_STORES = (arg('soak')?.split(',') ?? ['sqlite', 'postgres']) as ('sqlite' | 'postgres')[];
const SOAK_MINUTES = Number(arg('soak-minutes') ?? (QUICK ? 2 : 10));
const SOAK_RATE = Number(arg('soak-rate') ?? 400);
const NO_SOAK = process.argv.includes('--no-soak');
const SMS_ONLY = process.argv.includes('--sms-only');
// PostgreSQL takes a third to a quarter of SQLite's rate on the 2-core machine (four
// round trips per accept, and the database on the same cores), so its runs are shorter
// to keep the whole bench near 20 minutes; at 1,000/s it falls behind from the first
// second, so a burst of a few seconds already shows how its queue grows and drains.
const SIZES: Record<Mode['store'], ModeSizes> = {
  sqlite: { throughput: N, fixedSeconds: QUICK ? 5 : 10 },
  postgres: { throughput: Math.round(N / 4), fixedSeconds: QUICK ? 1 : 3 },
};

function median(xs: number[]): number {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

async function bareExpress(): Promise<{ perSecond: number; cpu: Record<string, number>; load: MachineLoad }> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', join('bench', 'bare-express.ts'), String(port)], { cwd: projectRoot(), stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
    await httpLoad({ url: `http://127.0.0.1:${port}/api/v1/tickets`, headers: { 'content-type': 'application/json' }, body: (i) => ticketBody(i, 'warm'), total: 2000, concurrency: CONCURRENCY });
    const meter = cpuMeter({ server: child.pid!, client: process.pid });
    const machine = machineMeter();
    const r = await httpLoad({ url: `http://127.0.0.1:${port}/api/v1/tickets`, headers: { 'content-type': 'application/json' }, body: (i) => ticketBody(i, 'bare'), total: N, concurrency: CONCURRENCY });
    const cpu = meter.stop(N);
    return { perSecond: r.perSecond, cpu, load: machine.stop(((cpu.server! + cpu.client!) * N) / 1000) };
  } finally {
    child.kill('SIGKILL');
  }
}

/** The SMS section: gateway and Kannel at windows 1 and 32, a round of each per bench round. */
async function smsSection(amqpUrl: string, out: (s?: string) => void): Promise<void> {
  // SMS beside Kannel on the same test SMSC and the same 60-character UCS-2 messages,
  // one round of each per bench round, interleaved, medians as above.
  const smsTotal = Math.round(10_000 * SCALE);
  const smsRounds: SmsWindowResult[][] = [];
  const beforeRounds: SmsWindowResult[][] = [];
  const kannelRounds: SmsWindowResult[][] = [];
  let kannelMissing = false;
  for (let round = 1; round <= ROUNDS; round++) {
    if (BEFORE) {
      const b = await benchSms({ amqpUrl, total: smsTotal, root: BEFORE });
      beforeRounds.push(b);
      for (const r of b) out(`round ${round}: ${smsLine('SMS before ', r)}`);
    }
    const gw = await benchSms({ amqpUrl, total: smsTotal });
    smsRounds.push(gw);
    for (const r of gw) out(`round ${round}: ${smsLine('SMS gateway', r)}`);
    if (kannelMissing) continue;
    const k = await benchKannel({ total: smsTotal });
    if (!k) {
      kannelMissing = true;
      out(KANNEL_MISSING);
      continue;
    }
    kannelRounds.push(k);
    for (const r of k) out(`round ${round}: ${smsLine('Kannel     ', r, false)}`);
  }
  out();
  out(`SMS (deliver_sm over one transceiver bind, ${SMS_CHARS}-character UCS-2 messages, ${fmt(smsTotal)} per window; answer = deliver_sm → deliver_sm_resp; CPU per message until every receipt/reply is submitted), medians of the rounds`);
  const smsMedian = (name: string, rounds: SmsWindowResult[][], brokerToo: boolean) => {
    for (let k = 0; k < (rounds[0]?.length ?? 0); k++) {
      const rs = rounds.map((r) => r[k]!);
      const med = (f: (r: SmsWindowResult) => number) => median(rs.map(f));
      const m: SmsWindowResult = {
        window: rs[0]!.window,
        total: smsTotal,
        ackedPerSecond: med((r) => r.ackedPerSecond),
        answerP50Ms: med((r) => r.answerP50Ms),
        answerP99Ms: med((r) => r.answerP99Ms),
        answersOver30ms: med((r) => r.answersOver30ms),
        e2eP50Ms: med((r) => r.e2eP50Ms),
        e2eP99Ms: med((r) => r.e2eP99Ms),
        cpu: { system: med((r) => r.cpu.system), broker: med((r) => r.cpu.broker), client: med((r) => r.cpu.client) },
        load: { seconds: med((r) => r.load.seconds), busyCores: med((r) => r.load.busyCores), otherCores: med((r) => r.load.otherCores), loadavg1: med((r) => r.load.loadavg1) },
        retries: med((r) => r.retries),
      };
      out(`  ${smsLine(name, m, brokerToo)}`);
    }
  };
  if (beforeRounds.length > 0) smsMedian('gateway before', beforeRounds, true);
  smsMedian('gateway', smsRounds, true);
  if (kannelRounds.length > 0) smsMedian('Kannel 1.4.5 (spool store, smsbox + HTTP sink reply)', kannelRounds, false);
}

async function main(): Promise<void> {
  const vhost = await createVhost('bench');
  const lines: string[] = [];
  const out = (s = '') => {
    lines.push(s);
    console.log(s);
  };
  try {
    out(`# Intake gateway benchmark — ${new Date().toISOString()}`);
    out(`machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${fmt(totalmem() / 2 ** 30, 0)} GiB, Node ${process.version}; broker on the same machine (RabbitMQ, quorum queues)`);
    out(`messages per run: ${fmt(N)}; HTTP concurrency ${CONCURRENCY}; ticket body ≈ ${ticketBody(1, 'x').length} bytes`);
    out();
    const soakAll = async () => {
      // --before: each store's soak also on the earlier build, just before this one's.
      for (const store of SOAK_STORES) {
        for (const root of BEFORE ? [BEFORE, undefined] : [undefined]) {
          const o = { store, rate: SOAK_RATE, minutes: SOAK_MINUTES, root };
          const before = loadavg()[0]!;
          const r = await soak(o);
          out();
          if (root) out(`build at ${root}:`);
          for (const l of formatSoak(o, r)) out(l);
          out(`  load average ${fmt(before, 1)} before, ${fmt(loadavg()[0]!, 1)} after`);
        }
      }
    };
    if (SOAK_ONLY) return await soakAll();
    const raw = await rawConfirmedPublish(vhost.url, 'bench.raw', N, 1200);
    out(`baseline  raw amqplib confirmed publish (quorum, window 1000): ${fmt(raw.perSecond)} msg/s`);
    if (SMS_ONLY) {
      out();
      await smsSection(vhost.url, out);
      return;
    }
    out(`rounds: ${ROUNDS} (figures are medians; load per round below); closed-loop runs: SQLite ${fmt(SIZES.sqlite.throughput)} tickets, PostgreSQL ${fmt(SIZES.postgres.throughput)}; open loop at 1,000/s for ${SIZES.sqlite.fixedSeconds} s (SQLite) / ${SIZES.postgres.fixedSeconds} s (PostgreSQL), and at half the closed-loop rate for 5 s`);
    out();
    const bares: Awaited<ReturnType<typeof bareExpress>>[] = [];
    const results = new Map<string, ModeResult[]>(MODES.map((m) => [m.name, []]));
    for (let round = 1; round <= ROUNDS; round++) {
      const b = await bareExpress();
      bares.push(b);
      out(`round ${round}: bare Express ${fmt(b.perSecond)} req/s (load avg ${fmt(b.load.loadavg1, 1)}, others ${fmt(b.load.otherCores, 2)} cores)`);
      for (const m of MODES) {
        const r = await runMode(m, SIZES[m.store]);
        results.get(m.name)!.push(r);
        const f = r.fixed[0]!;
        out(
          `round ${round}: ${m.name.padEnd(6)} ${fmt(r.ticketsPerSecond)} tickets/s; gateway ${r.cpu.gateways.map((c) => fmt(c)).join(' + ')} µs, postgres ${fmt(r.cpu.postgres)} µs, broker ${fmt(r.cpu.broker)} µs, client ${fmt(r.cpu.client)} µs per ticket; ` +
            `1,000/s: answered ${fmt(f.answeredPerSecond)}/s, 202 p99 ${fmt(f.accept.p99)} ms, consumed p99 ${fmt(f.consumed.p99)} ms, ${formatFailed(f)}, sender late ≤ ${fmt(f.sendLagMaxMs, 1)} ms; ` +
            `machine ${fmt(r.load.busyCores, 2)} cores busy, others ${fmt(r.load.otherCores, 2)}, load avg ${fmt(r.load.loadavg1, 1)}` +
            (r.takeover ? `; takeover ${r.takeover.stranded ? `${fmt(r.takeover.ms)} ms for ${r.takeover.stranded} stranded rows${r.takeover.missing ? `, ${r.takeover.missing} not out after 60 s` : ''}` : 'none stranded'}` : ''),
        );
        if (f.tail) out(`    1,000/s in the gateway${m.instances > 1 ? 's' : ''}: ${formatTail(f.tail)}`);
      }
    }
    const bare = median(bares.map((b) => b.perSecond));
    out();
    out(`baseline  bare Express 5 JSON POST → 202: ${fmt(bare)} req/s; CPU per request: server ${fmt(median(bares.map((b) => b.cpu.server!)))} µs, load generator ${fmt(median(bares.map((b) => b.cpu.client!)))} µs`);
    out();
    out('app API (POST /api/v1/tickets → store → confirmed on tickets.created), medians of the rounds');
    const ms = (l: { p50: number; p90: number; p99: number; p999: number }) => `${fmt(l.p50, 1)} / ${fmt(l.p90, 1)} / ${fmt(l.p99, 1)} / ${fmt(l.p999, 1)}`;
    const medLat = (xs: { p50: number; p90: number; p99: number; p999: number }[]) => ({ p50: median(xs.map((x) => x.p50)), p90: median(xs.map((x) => x.p90)), p99: median(xs.map((x) => x.p99)), p999: median(xs.map((x) => x.p999)) });
    for (const m of MODES) {
      const rs = results.get(m.name)!;
      const med = (f: (r: ModeResult) => number) => median(rs.map(f));
      out(`${m.name}: ${m.store}, ${m.instances} instance(s)`);
      out(`  closed loop, 64 clients:  ${fmt(med((r) => r.ticketsPerSecond))} tickets/s confirmed (${fmt((100 * med((r) => r.ticketsPerSecond)) / bare, 0)} % of bare Express)`);
      out(
        `  CPU per ticket:           ${Array.from({ length: m.instances }, (_, k) => `gateway ${k + 1} ${fmt(med((r) => r.cpu.gateways[k]!))} µs`).join(', ')}` +
          `${m.store === 'postgres' ? `, postgres ${fmt(med((r) => r.cpu.postgres))} µs` : ''}, broker ${fmt(med((r) => r.cpu.broker))} µs, load generator + consumer ${fmt(med((r) => r.cpu.client))} µs`,
      );
      // The target: a durable, published ticket costs the gateway no more than bare Express answering the same JSON.
      out(`  gateway CPU per ticket ÷ bare Express CPU per request (same round): ${rs.map((r, k) => fmt(r.cpu.gateways.reduce((a, b) => a + b, 0) / bares[k]!.cpu.server!, 2)).join(' / ')} (median ${fmt(median(rs.map((r, k) => r.cpu.gateways.reduce((a, b) => a + b, 0) / bares[k]!.cpu.server!)), 2)})`);
      out(`  gateway peak RSS (VmHWM over the mode run): ${rs.map((r) => r.rssPeakMb.map((x) => fmt(x, 0)).join(' + ')).join(' / ')} MB`);
      for (let k = 0; k < rs[0]!.fixed.length; k++) {
        const f = rs.map((r) => r.fixed[k]!);
        out(`  open loop ${k === 0 ? fmt(f[0]!.rate) : `½ closed-loop rate (${f.map((x) => fmt(x.rate)).join(', ')})`}/s${m.instances > 1 ? ' (round-robin)' : ''}: answered ${fmt(median(f.map((x) => x.answeredPerSecond)))}/s; p50/p90/p99/p99.9 ms: POST → 202 ${ms(medLat(f.map((x) => x.accept)))}; POST → consumed ${ms(medLat(f.map((x) => x.consumed)))}`);
      }
      if (m.store === 'postgres') {
        const w = new Map<string, number[]>();
        for (const r of rs) for (const [k, v] of r.waits) w.set(k, [...(w.get(k) ?? []), v]);
        const top = [...w].map(([k, v]) => [k, v.reduce((a, b) => a + b, 0) / rs.length] as const).sort((a, b) => b[1] - a[1]).slice(0, 5);
        out(`  its backends in pg_stat_activity (closed loop, every 50 ms): ${top.map(([k, v]) => `${k} ${fmt(100 * v, 0)} %`).join(', ')}`);
      }
      const tk = rs.map((r) => r.takeover).filter((t) => t && t.stranded > 0);
      if (m.instances > 1) out(`  SIGKILL of one instance → its last stranded row on tickets.created: ${fmt(median(tk.map((t) => t!.ms)))} ms (median of ${tk.length}; ${tk.map((t) => `${t!.stranded} rows stranded${t!.missing ? ` (${t!.missing} not out after 60 s)` : ''}`).join(', ')})`);
      out(`  machine during the closed loop: ${fmt(med((r) => r.load.busyCores), 2)} of 2 cores busy, of which others ${fmt(med((r) => r.load.otherCores), 2)}; load avg ${fmt(med((r) => r.load.loadavg1), 1)}`);
    }
    if (SKIP_REST) return;
    out();
    await smsSection(vhost.url, out);
    out();
    out('open deadlines (rows due in a day; breach lateness of 200 tickets with a 3 s deadline)');
    // --quick leaves out the million (building it takes a minute or two).
    for (const open of (QUICK ? [1_000, 100_000] : [1_000, 100_000, 1_000_000]).map((n) => Math.round(n * Math.min(1, USER_SCALE)))) {
      const vh = await createVhost('bench-dl');
      try {
        const d = await benchDeadlines(vh.url, open);
        out(`  ${fmt(d.open).padStart(9)} open: RSS ${fmt(d.rssMb)} MB; breach lag p50 ${fmt(d.lagP50Ms)} ms, p99 ${fmt(d.lagP99Ms)} ms, max ${fmt(d.lagMaxMs)} ms (${d.fired} fired)`);
      } finally {
        await vh.drop();
      }
    }
    if (!NO_SOAK) await soakAll();
  } finally {
    await vhost.drop();
    mkdirSync(join(projectRoot(), 'bench', 'results'), { recursive: true });
    writeFileSync(join(projectRoot(), 'bench', 'results', `bench-${new Date().toISOString().replace(/[:.]/g, '-')}.txt`), lines.join('\n') + '\n');
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
