import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { freePort, tempDir } from '../test/support/gateway.js';
import { TestSmsc } from '../test/support/smsc.js';
import { cpuMeter } from './lib.js';
import { machineMeter } from './machine.js';
import { answerColumns, driveSmsc, smsLine, type SmsWindowResult } from './sms.js';

/**
 * Kannel beside the gateway, on the same test SMSC and the same messages: its
 * bearerbox binds as an SMPP transceiver, keeps every message in its spool store,
 * and hands it to an smsbox, whose sms-service asks a local HTTP sink for the
 * reply; the sink answers 200 with a receipt text, which goes back to the citizen
 * as submit_sm (Kannel's equivalent of the gateway's receipt). Kannel is not a
 * dependency of anything else: without bearerbox/smsbox (Debian: `apt-get install
 * kannel`) this returns null and says so.
 */

const BIN_DIRS = ['/usr/sbin', '/usr/bin', '/usr/local/sbin', '/usr/local/bin'];
const RECEIPT = '您的来信已收到，编号20261201-000001，我们将在规定时限内答复。';
const STOP_WAIT_MS = 5000;

function findBinary(name: string): string | null {
  for (const dir of BIN_DIRS) if (existsSync(join(dir, name))) return join(dir, name);
  return null;
}

export function kannelBinaries(): { bearerbox: string; smsbox: string } | null {
  const bearerbox = findBinary('bearerbox');
  const smsbox = findBinary('smsbox');
  return bearerbox && smsbox ? { bearerbox, smsbox } : null;
}

export const KANNEL_MISSING = 'Kannel not installed (no bearerbox/smsbox; Debian: apt-get install kannel): Kannel comparison skipped';

interface KannelPorts {
  admin: number;
  smsbox: number;
  sink: number;
}

function kannelConf(dir: string, smsc: TestSmsc, ports: KannelPorts): string {
  return `group = core
admin-port = ${ports.admin}
admin-password = bench
admin-allow-ip = "127.0.0.1"
smsbox-port = ${ports.smsbox}
box-allow-ip = "127.0.0.1"
log-file = "${join(dir, 'bearerbox.log')}"
log-level = 2
store-type = spool
store-location = "${join(dir, 'spool')}"

group = smsc
smsc = smpp
smsc-id = bench
host = 127.0.0.1
port = ${smsc.port}
transceiver-mode = true
smsc-username = hotline
smsc-password = secret
system-type = ""
interface-version = 34
max-pending-submits = 64
enquire-link-interval = 30
reconnect-delay = 1

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = ${ports.smsbox}
log-file = "${join(dir, 'smsbox.log')}"
log-level = 2
global-sender = 106353112345

group = sms-service
keyword = default
catch-all = true
get-url = "http://127.0.0.1:${ports.sink}/mo?from=%p&to=%P&text=%a"
max-messages = 1
`;
}

function stopByPid(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      if (child.pid && child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGKILL');
    }, STOP_WAIT_MS);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    process.kill(child.pid!, 'SIGTERM');
  });
}

export interface KannelBenchOptions {
  total?: number;
  windows?: number[];
  warmup?: number;
}

/** Kannel at each window, the same columns as benchSms (broker: none); null when Kannel is not installed. */
export async function benchKannel(opts: KannelBenchOptions = {}): Promise<SmsWindowResult[] | null> {
  const bins = kannelBinaries();
  if (!bins) return null;
  const total = opts.total ?? 5000;
  const windows = opts.windows ?? [1, 32];
  const warmup = opts.warmup ?? 500;
  const dir = tempDir('bench-kannel-');
  mkdirSync(join(dir, 'spool'));
  const smsc = await TestSmsc.start();
  let mo = 0;
  const sink = http.createServer((req, res) => {
    mo++;
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
    res.end(RECEIPT);
  });
  await new Promise<void>((resolve) => sink.listen(0, '127.0.0.1', () => resolve()));
  const ports = { admin: await freePort(), smsbox: await freePort(), sink: (sink.address() as AddressInfo).port };
  const conf = join(dir, 'kannel.conf');
  writeFileSync(conf, kannelConf(dir, smsc, ports));
  const children: ChildProcess[] = [];
  const start = (bin: string) => {
    const child = spawn(bin, [conf], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr!.resume();
    children.push(child);
    return child;
  };
  try {
    const bearerbox = start(bins.bearerbox);
    await smsc.waitForBind(1, 20_000);
    const smsbox = start(bins.smsbox);
    // smsbox connects to bearerbox on its own schedule: wait until one message makes the whole trip.
    const until = Date.now() + 20_000;
    while (mo === 0 || smsc.submits.length === 0) {
      if (Date.now() > until) throw new Error(`Kannel did not pass a message through smsbox:\n${tail(join(dir, 'bearerbox.log'))}\n${tail(join(dir, 'smsbox.log'))}`);
      if (mo === 0) await driveSmsc(smsc, 'probe', 1, 1);
      await new Promise((r) => setTimeout(r, 200));
    }
    let receipts = smsc.submits.length;
    const run = async (prefix: string, n: number, window: number) => {
      const d = await driveSmsc(smsc, prefix, n, window);
      receipts += n;
      const wait = Date.now() + 180_000;
      while (smsc.submits.length < receipts) {
        if (Date.now() > wait) throw new Error(`Kannel bench: ${smsc.submits.length} of ${receipts} replies submitted`);
        await new Promise((r) => setTimeout(r, 5));
      }
      return d;
    };
    if (warmup > 0) await run('warm', warmup, 32);
    const results: SmsWindowResult[] = [];
    for (const [w, window] of windows.entries()) {
      const meter = cpuMeter({ bearerbox: bearerbox.pid!, smsbox: smsbox.pid!, client: process.pid });
      const machine = machineMeter();
      const d = await run(`k${window}x${w}`, total, window);
      const cpu = meter.stop(total);
      const system = cpu.bearerbox! + cpu.smsbox!;
      results.push({
        window,
        total,
        ...answerColumns(d),
        e2eP50Ms: NaN,
        e2eP99Ms: NaN,
        cpu: { system, broker: NaN, client: cpu.client! },
        load: machine.stop(((system + cpu.client!) * total) / 1000),
        retries: d.retries,
      });
    }
    return results;
  } finally {
    // smsbox first, so bearerbox is not left waiting for it; each by its own PID.
    for (const child of children.reverse()) await stopByPid(child);
    await smsc.close();
    await new Promise<void>((resolve) => sink.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  }
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').slice(-2000);
  } catch {
    return `(no ${file})`;
  }
}

// `npx tsx bench/kannel.ts [total]` runs it alone.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const total = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? 5000);
  const rs = await benchKannel({ total });
  if (!rs) console.log(KANNEL_MISSING);
  else for (const r of rs) console.log(smsLine('Kannel', r, false) + (r.retries ? ` (${r.retries} retries)` : ''));
}
