import { rmSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import amqp from 'amqplib';
import { createVhost } from '../test/support/rabbit.js';
import { spawnGateway, tempDir } from '../test/support/gateway.js';
import { TestSmsc } from '../test/support/smsc.js';
import { brokerPid, brokerReady, cpuMeter, fmt, percentile } from './lib.js';
import { machineMeter, type MachineLoad } from './machine.js';

export interface SmsBenchOptions {
  /** Citizen messages per measured window (default 5000). */
  total?: number;
  /** deliver_sm outstanding at once over the one bind, like an SMSC's window; one measured run each (default 1 and 32). */
  windows?: number[];
  /** Every n-th message is a 3-part UDH long message (default 0 = none: every message is one 60-character UCS-2 deliver_sm). */
  longEvery?: number;
  /** Messages sent first and not measured (default 500). */
  warmup?: number;
  /** Broker vhost URL; default: a fresh vhost, dropped afterwards. */
  amqpUrl?: string;
  /** Run the `npm run build` output, as `npm start` does (default true); false runs src/ through tsx. */
  compiled?: boolean;
  /** Extra node arguments for the gateway process (e.g. --cpu-prof). */
  nodeArgs?: string[];
  /** Extra gateway environment (e.g. STORE_SYNC). */
  env?: Record<string, string>;
  /** Another checkout's build to measure instead of this one's (a before/after). */
  root?: string;
}

/** One measured run at one window; the columns the SMS comparison with Kannel reports. */
export interface SmsWindowResult {
  window: number;
  total: number;
  /** deliver_sm answered with ESME_ROK per second, first deliver_sm to last deliver_sm_resp. */
  ackedPerSecond: number;
  /** deliver_sm sent → deliver_sm_resp (ack after durable), ms. */
  answerP50Ms: number;
  answerP99Ms: number;
  /** Share of answers slower than 30 ms (the Nagle/delayed-ACK signature sits at 40 ms). */
  answersOver30ms: number;
  /** deliver_sm sent → ticket consumed from `tickets.created`, ms (NaN where nothing is consumed, as with Kannel). */
  e2eP50Ms: number;
  e2eP99Ms: number;
  /** CPU per message until every ticket is out and every receipt submitted, µs: the system under test, the broker, this process (SMSC + consumer). */
  cpu: { system: number; broker: number; client: number };
  load: MachineLoad;
  retries: number;
}

/** What the comparison used: 60 characters of Chinese, UCS-2 (120 octets), one deliver_sm each. */
const TEXT = '暴雨后小区门口积水严重，车辆无法通行，请尽快处理。小区物业不作为，多次反映无果，恳请相关部门督促解决。谢谢！';
const LONG = `${TEXT}${'小区物业不作为，多次反映无果，恳请相关部门督促解决。'.repeat(3)}`;
export const SMS_CHARS = 60;

/** The key a message carries (`#key#`), so its ticket can be matched on `tickets.created`. */
export function smsKey(prefix: string, i: number): string {
  return `${prefix}${String(i).padStart(6, '0')}`;
}

/** deliver_sm fields of message i: exactly SMS_CHARS characters of UCS-2, or a 3-part long message. */
export function smsPdus(smsc: TestSmsc, prefix: string, i: number, longEvery = 0): Record<string, unknown>[] {
  const key = smsKey(prefix, i);
  const tag = `#${key}#`;
  const from = String(13800000000 + i);
  if (longEvery > 0 && i % longEvery === 0) return smsc.segments(`${LONG}${tag}`, { method: 'udh8', ref: i & 0xff, parts: 3, from });
  const text = TEXT.slice(0, SMS_CHARS - tag.length) + tag;
  return [{ source_addr: from, data_coding: 8, short_message: Buffer.from(text, 'utf16le').swap16() }];
}

export interface DriveResult {
  seconds: number;
  /** deliver_sm → deliver_sm_resp, ms, sorted. */
  answers: number[];
  /** When message i's first deliver_sm went out (performance.now()). */
  sentAt: Map<string, number>;
  retries: number;
  /** submit_sm expected back (one receipt per message). */
  messages: number;
}

/**
 * The test SMSC sends `n` messages with `window` deliver_sm outstanding at once and
 * times each answer. A retry status is retried after 50 ms, as an SMSC would.
 */
export async function driveSmsc(smsc: TestSmsc, prefix: string, n: number, window: number, longEvery = 0): Promise<DriveResult> {
  const sentAt = new Map<string, number>();
  const answers: number[] = [];
  let retries = 0;
  let next = 0;
  const one = async (i: number) => {
    sentAt.set(smsKey(prefix, i), performance.now());
    for (const pdu of smsPdus(smsc, prefix, i, longEvery)) {
      for (;;) {
        const t = performance.now();
        const status = await smsc.deliver(pdu, 60_000);
        if (status === 0) {
          answers.push(performance.now() - t);
          break;
        }
        // ESME_RX_T_APPN: the receiver could not store it now; an SMSC retries.
        retries++;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  };
  const worker = async () => {
    while (next < n) await one(next++);
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: window }, worker));
  const seconds = (performance.now() - t0) / 1000;
  answers.sort((a, b) => a - b);
  return { seconds, answers, sentAt, retries, messages: n };
}

export function answerColumns(d: DriveResult): Pick<SmsWindowResult, 'ackedPerSecond' | 'answerP50Ms' | 'answerP99Ms' | 'answersOver30ms'> {
  return {
    ackedPerSecond: d.answers.length / d.seconds,
    answerP50Ms: percentile(d.answers, 50),
    answerP99Ms: percentile(d.answers, 99),
    answersOver30ms: d.answers.filter((a) => a > 30).length / d.answers.length,
  };
}

/** One line of the SMS table, for the gateway or Kannel. */
export function smsLine(name: string, r: SmsWindowResult, brokerToo = true): string {
  return (
    `${name} window ${String(r.window).padStart(2)}: ${fmt(r.ackedPerSecond)} acked/s; answer p50 ${fmt(r.answerP50Ms, 2)} ms, p99 ${fmt(r.answerP99Ms, 1)} ms, ` +
    `${fmt(100 * r.answersOver30ms, 2)} % over 30 ms; CPU per message ${fmt(r.cpu.system)} µs${brokerToo ? ` + broker ${fmt(r.cpu.broker)} µs` : ''}` +
    (Number.isNaN(r.e2eP50Ms) ? '' : `; deliver_sm → consumed p50 ${fmt(r.e2eP50Ms, 1)} ms, p99 ${fmt(r.e2eP99Ms, 1)} ms`) +
    `; machine ${fmt(r.load.busyCores, 2)} cores busy, others ${fmt(r.load.otherCores, 2)}, load avg ${fmt(r.load.loadavg1, 1)}`
  );
}

/**
 * SMS intake: a test SMSC drives deliver_sm over one transceiver bind to a gateway
 * process, and a consumer on `tickets.created` times each ticket's arrival. Every
 * deliver_sm is answered only after its ticket is journaled; each window's run ends
 * when the broker has delivered the last ticket and the SMSC has every receipt, so
 * the CPU per message includes the receipt's submit_sm and its bookkeeping.
 */
export async function benchSms(opts: SmsBenchOptions = {}): Promise<SmsWindowResult[]> {
  const total = opts.total ?? 5000;
  const windows = opts.windows ?? [1, 32];
  const longEvery = opts.longEvery ?? 0;
  const warmup = opts.warmup ?? 500;
  const vhost = opts.amqpUrl ? null : await createVhost('bench-sms');
  const amqpUrl = opts.amqpUrl ?? vhost!.url;
  const smsc = await TestSmsc.start();
  const dataDir = tempDir('bench-sms-');
  // Receipts go out as submit_sm during the run; a high TPS keeps them from queueing behind the limit.
  const proc = await spawnGateway(
    { AMQP_URL: amqpUrl, DATA_DIR: dataDir, SMPP_URL: smsc.url, LOG_LEVEL: 'warn', SMS_TPS: '10000', SMS_WINDOW: '64', ...opts.env },
    { compiled: opts.compiled ?? true, nodeArgs: opts.nodeArgs, root: opts.root },
  );
  const conn = await amqp.connect(amqpUrl).catch(async (err: unknown) => {
    proc.kill('SIGTERM');
    await proc.exited;
    throw err;
  });
  const arrivals = new Map<string, number>();
  const broker = brokerPid();
  const results: SmsWindowResult[] = [];
  try {
    await brokerReady(proc.baseUrl);
    await smsc.waitForBind(1, 20_000);
    const ch = await conn.createChannel();
    await ch.prefetch(2000);
    await ch.consume('tickets.created', (m) => {
      if (!m) return;
      const body = JSON.parse(m.content.toString('utf8')) as { content: string };
      const key = /#(\w+)#/.exec(body.content)?.[1];
      if (key) arrivals.set(key, performance.now());
      ch.ack(m);
    });

    let receipts = 0;
    const run = async (prefix: string, n: number, window: number) => {
      const d = await driveSmsc(smsc, prefix, n, window, longEvery);
      receipts += n;
      const until = Date.now() + 180_000;
      while ([...d.sentAt.keys()].some((k) => !arrivals.has(k)) || smsc.submits.length < receipts) {
        if (Date.now() > until) throw new Error(`SMS bench: tickets or receipts did not arrive: ${[...d.sentAt.keys()].filter((k) => !arrivals.has(k)).slice(0, 10).join(', ')}; ${smsc.submits.length} of ${receipts} receipts\n${proc.output().slice(-3000)}`);
        await new Promise((r) => setTimeout(r, 5));
      }
      const e2e = [...d.sentAt].map(([k, t]) => arrivals.get(k)! - t).sort((a, b) => a - b);
      return { d, e2e };
    };

    if (warmup > 0) await run('warm', warmup, 32);
    for (const [w, window] of windows.entries()) {
      const meter = cpuMeter({ system: proc.child.pid!, broker, client: process.pid });
      const machine = machineMeter();
      const { d, e2e } = await run(`w${window}x${w}`, total, window);
      const cpu = meter.stop(total);
      const measured = ((cpu.system! + (Number.isNaN(cpu.broker!) ? 0 : cpu.broker!) + cpu.client!) * total) / 1000;
      results.push({
        window,
        total,
        ...answerColumns(d),
        e2eP50Ms: percentile(e2e, 50),
        e2eP99Ms: percentile(e2e, 99),
        cpu: { system: cpu.system!, broker: cpu.broker!, client: cpu.client! },
        load: machine.stop(measured),
        retries: d.retries,
      });
    }
    return results;
  } finally {
    await conn.close().catch(() => {});
    proc.kill('SIGTERM');
    await proc.exited;
    await smsc.close();
    rmSync(dataDir, { recursive: true, force: true });
    await vhost?.drop();
  }
}

// `npx tsx bench/sms.ts [total] [--compiled] [--windows=1,32]` runs it alone (from src/ unless --compiled, which needs `npm run build`).
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const total = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? 5000);
  const windows = process.argv.find((a) => a.startsWith('--windows='))?.slice(10).split(',').map(Number);
  const rs = await benchSms({ total, compiled: process.argv.includes('--compiled'), ...(windows ? { windows } : {}) });
  for (const r of rs) console.log(smsLine('gateway', r) + (r.retries ? ` (${r.retries} retries)` : ''));
}
