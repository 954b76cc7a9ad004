import { spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import amqp from 'amqplib';
import { createVhost } from '../test/support/rabbit.js';
import { freePort, spawnGateway, tempDir, TEST_API_KEY } from '../test/support/gateway.js';
import { brokerPid, brokerReady, cpuMeter, fmt, httpLoad, percentile, rawConfirmedPublish } from './lib.js';
import { projectRoot } from '../src/config.js';
import { benchDeadlines } from './deadlines.js';
import { benchSms } from './sms.js';
import { ticketBody } from './bodies.js';

/**
 * `npm run bench`: the app API measured against baselines taken in the same run
 * on the same machine and broker: raw amqplib confirmed publishing to a quorum
 * queue, and a bare Express 5 JSON endpoint. Sizes can be scaled with
 * BENCH_SCALE (1 = default).
 */
const SCALE = Number(process.argv.find((a) => a.startsWith('--scale='))?.slice(8) ?? 1);
const N = Math.round(20_000 * SCALE);
const CONCURRENCY = 64;

function rss(pid: number): { rssMb: number; peakMb: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)?.[1] ?? 0);
  return { rssMb: kb('VmRSS') / 1024, peakMb: kb('VmHWM') / 1024 };
}

async function bareExpress(): Promise<{ perSecond: number; cpu: Record<string, number> }> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', join('bench', 'bare-express.ts'), String(port)], { cwd: projectRoot(), stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
    await httpLoad({ url: `http://127.0.0.1:${port}/api/v1/tickets`, headers: { 'content-type': 'application/json' }, body: (i) => ticketBody(i, 'warm'), total: 2000, concurrency: CONCURRENCY });
    const meter = cpuMeter({ server: child.pid!, client: process.pid });
    const r = await httpLoad({ url: `http://127.0.0.1:${port}/api/v1/tickets`, headers: { 'content-type': 'application/json' }, body: (i) => ticketBody(i, 'bare'), total: N, concurrency: CONCURRENCY });
    return { perSecond: r.perSecond, cpu: meter.stop(N) };
  } finally {
    child.kill('SIGKILL');
  }
}

interface GatewayRun {
  acceptedPerSecond: number;
  confirmedPerSecond: number;
  e2eP50: number;
  e2eP99: number;
  fixed: { rate: number; httpP99: number; e2eP50: number; e2eP99: number; achieved: number }[];
  rssMb: number;
  peakMb: number;
  /** CPU µs per ticket during the open-load run: gateway, broker, load generator with the consumer. */
  cpu: Record<string, number>;
}

async function gatewayApp(amqpUrl: string): Promise<GatewayRun> {
  const dataDir = tempDir('bench-');
  const proc = await spawnGateway({ AMQP_URL: amqpUrl, DATA_DIR: dataDir, APP_API_KEYS: `bench:${TEST_API_KEY}`, APP_RATE_LIMIT: '1000000', LOG_LEVEL: 'warn' }, { compiled: true });
  await brokerReady(proc.baseUrl);
  const conn = await amqp.connect(amqpUrl);
  const arrivals = new Map<string, number>();
  try {
    const ch = await conn.createChannel();
    await ch.prefetch(2000);
    await ch.consume('tickets.created', (m) => {
      if (!m) return;
      arrivals.set(m.properties.messageId as string, performance.now());
      ch.ack(m);
    });
    const url = `${proc.baseUrl}/api/v1/tickets`;
    const headers = { 'content-type': 'application/json', authorization: `Bearer ${TEST_API_KEY}` };
    const waitAll = async (ids: Map<string, number>) => {
      const until = Date.now() + 120_000;
      while ([...ids.keys()].some((id) => !arrivals.has(id))) {
        if (Date.now() > until) throw new Error('tickets did not all arrive');
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    const e2e = (ids: Map<string, number>) => [...ids].map(([id, sent]) => arrivals.get(id)! - sent).sort((a, b) => a - b);

    // Warm-up (JIT, SQLite page cache, broker queues).
    const warm = new Map<string, number>();
    await httpLoad({ url, headers, body: (i) => ticketBody(i, 'warm'), total: 2000, concurrency: CONCURRENCY, onAnswer: (_i, _s, b, t) => warm.set(JSON.parse(b).id, t) });
    await waitAll(warm);

    const open = new Map<string, number>();
    const meter = cpuMeter({ gateway: proc.child.pid!, broker: brokerPid(), client: process.pid });
    const t0 = performance.now();
    const r = await httpLoad({ url, headers, body: (i) => ticketBody(i, 'open'), total: N, concurrency: CONCURRENCY, onAnswer: (_i, _s, b, t) => open.set(JSON.parse(b).id, t) });
    const mem = rss(proc.child.pid!);
    await waitAll(open);
    const cpu = meter.stop(N);
    const last = Math.max(...[...open.keys()].map((id) => arrivals.get(id)!));
    const openE2e = e2e(open);

    const fixed: GatewayRun['fixed'] = [];
    for (const rate of [100, 1000]) {
      const ids = new Map<string, number>();
      const total = rate * 5;
      const fr = await httpLoad({ url, headers, body: (i) => ticketBody(i, `fixed${rate}`), total, concurrency: CONCURRENCY, rate, onAnswer: (_i, _s, b, t) => ids.set(JSON.parse(b).id, t) });
      await waitAll(ids);
      const lat = e2e(ids);
      fixed.push({ rate, achieved: fr.perSecond, httpP99: percentile(fr.latencyMs, 99), e2eP50: percentile(lat, 50), e2eP99: percentile(lat, 99) });
    }
    return {
      acceptedPerSecond: r.perSecond,
      confirmedPerSecond: open.size / ((last - t0) / 1000),
      e2eP50: percentile(openE2e, 50),
      e2eP99: percentile(openE2e, 99),
      fixed,
      ...mem,
      cpu,
    };
  } finally {
    await conn.close().catch(() => {});
    proc.kill('SIGTERM');
    await proc.exited;
    rmSync(dataDir, { recursive: true, force: true });
  }
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
    const raw = await rawConfirmedPublish(vhost.url, 'bench.raw', N, 1200);
    out(`baseline  raw amqplib confirmed publish (quorum, window 1000): ${fmt(raw.perSecond)} msg/s`);
    const bareRun = await bareExpress();
    const bare = bareRun.perSecond;
    out(`baseline  bare Express 5 JSON POST → 202:                    ${fmt(bare)} req/s (CPU per request: server ${fmt(bareRun.cpu.server!)} µs, load generator ${fmt(bareRun.cpu.client!)} µs)`);
    out();
    const g = await gatewayApp(vhost.url);
    out('app API (POST /api/v1/tickets → journal → confirmed on tickets.created)');
    out(`  accepted (HTTP 202):            ${fmt(g.acceptedPerSecond)} tickets/s   = ${fmt((100 * g.acceptedPerSecond) / bare, 0)} % of bare Express`);
    out(`  confirmed publication:          ${fmt(g.confirmedPerSecond)} tickets/s   = ${fmt((100 * g.confirmedPerSecond) / raw.perSecond, 0)} % of raw amqplib, ${fmt((100 * g.confirmedPerSecond) / bare, 0)} % of bare Express`);
    out(`  open load, POST → consumed:     p50 ${fmt(g.e2eP50, 1)} ms, p99 ${fmt(g.e2eP99, 1)} ms`);
    for (const f of g.fixed) {
      out(`  fixed ${fmt(f.rate)}/s (achieved ${fmt(f.achieved)}/s): HTTP p99 ${fmt(f.httpP99, 1)} ms; POST → consumed p50 ${fmt(f.e2eP50, 1)} ms, p99 ${fmt(f.e2eP99, 1)} ms`);
    }
    out(`  CPU per ticket, open load:      gateway ${fmt(g.cpu.gateway!)} µs, broker ${fmt(g.cpu.broker!)} µs, load generator + consumer ${fmt(g.cpu.client!)} µs (two cores = ${fmt(2e6)} µs/s)`);
    out(`  gateway RSS after open load:    ${fmt(g.rssMb)} MB (peak ${fmt(g.peakMb)} MB)`);

    out();
    const broker = brokerPid();
    let smsMeter: ReturnType<typeof cpuMeter> | null = null;
    let smsCpu: Record<string, number> = {};
    const smsTotal = Math.round(10_000 * SCALE);
    const sms = await benchSms({
      amqpUrl: vhost.url,
      total: smsTotal,
      onMeasure: (phase, pid) => {
        if (phase === 'start') smsMeter = cpuMeter({ gateway: pid, broker, client: process.pid });
        else smsCpu = smsMeter!.stop(smsTotal);
      },
    });
    out('SMS (deliver_sm over one transceiver bind → confirmed ticket; every 10th message in 3 parts; a receipt submit_sm per ticket)');
    out(`  ${fmt(sms.messagesPerSecond)} messages/s = ${fmt((100 * sms.messagesPerSecond) / raw.perSecond, 0)} % of raw amqplib; deliver_sm → consumed p50 ${fmt(sms.p50Ms, 1)} ms, p99 ${fmt(sms.p99Ms, 1)} ms`);
    out(`  CPU per message: gateway ${fmt(smsCpu.gateway!)} µs, broker ${fmt(smsCpu.broker!)} µs, test SMSC + consumer ${fmt(smsCpu.client!)} µs`);

    out();
    out('open deadlines (rows due in a day; breach lateness of 200 tickets with a 3 s deadline)');
    for (const open of [1_000, 100_000, 1_000_000].map((n) => Math.round(n * Math.min(1, SCALE)))) {
      const vh = await createVhost('bench-dl');
      try {
        const d = await benchDeadlines(vh.url, open);
        out(`  ${fmt(d.open).padStart(9)} open: RSS ${fmt(d.rssMb)} MB; breach lag p50 ${fmt(d.lagP50Ms)} ms, p99 ${fmt(d.lagP99Ms)} ms, max ${fmt(d.lagMaxMs)} ms (${d.fired} fired)`);
      } finally {
        await vh.drop();
      }
    }
  } finally {
    await vhost.drop();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
