import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createVhost } from '../test/support/rabbit.js';
import { createTestDatabase } from '../test/support/postgres.js';
import { postgresMeter } from './machine.js';
import { spawnGateway, tempDir, TEST_API_KEY } from '../test/support/gateway.js';
import { brokerPid, brokerReady, cpuMeter, fmt, httpLoad } from './lib.js';
import { ticketBody } from './bodies.js';
import { benchSms } from './sms.js';
import { openLoop } from './openloop.js';

/**
 * `npm run bench:profile [-- app|sms] [pg] [N]`: the app API (or SMS over one bind)
 * under open load with `--cpu-prof`, then a summary of where the gateway's CPU went
 * (self time by file and by function), and its CPU time per ticket. `pg` runs the app
 * API on a PostgreSQL store (a database of its own, dropped after) and adds
 * PostgreSQL's CPU per ticket. The .cpuprofile stays in bench/results/ for a closer
 * look in Chrome DevTools.
 */
interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

function area(url: string): string {
  if (!url) return '(native/gc)';
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (m) return m[1]!;
  const src = /\/(src|dist\/src)\/(.+)$/.exec(url);
  if (src) return `src/${src[2]}`;
  return url.startsWith('node:') ? url : url.replace(/^.*\//, '');
}

const broker = brokerPid();

const args = process.argv.slice(2);
const channel = args.find((a) => a === 'sms' || a === 'app') ?? 'app';
const onPg = args.includes('pg');
const N = Number(args.find((a) => /^\d+$/.test(a)) ?? (channel === 'sms' ? 5_000 : onPg ? 3_000 : 20_000));
/** `300/s`: the app API at a fixed open-loop rate instead of as fast as answers come (small batches, timers: the cost at ordinary load). */
const RATE = Number(args.find((a) => /^\d+\/s$/.test(a))?.slice(0, -2) ?? 0);
const profDir = join('bench', 'results');
rmSync(profDir, { recursive: true, force: true });
const nodeArgs = ['--cpu-prof', `--cpu-prof-dir=${profDir}`];

if (channel === 'sms') {
  // `-- sms [N] [--window=1]`: one window (default 1, where CPU per message is highest).
  const window = Number(args.find((a) => a.startsWith('--window='))?.slice(9) ?? 1);
  const [r] = await benchSms({ total: N, windows: [window], nodeArgs });
  console.log(`${fmt(r!.ackedPerSecond)} SMS/s acked at window ${window}; CPU per message: gateway ${fmt(r!.cpu.system)} µs, broker ${fmt(r!.cpu.broker)} µs`);
} else {
  const vhost = await createVhost('profile');
  const dataDir = tempDir('profile-');
  const db = onPg ? await createTestDatabase('profile') : null;
  const proc = await spawnGateway(
    { AMQP_URL: vhost.url, DATA_DIR: dataDir, APP_API_KEYS: `bench:${TEST_API_KEY}`, APP_RATE_LIMIT: '1000000', LOG_LEVEL: 'warn', ...(db ? { DATABASE_URL: db.url } : {}) },
    { compiled: true, nodeArgs },
  );
  try {
    await brokerReady(proc.baseUrl);
    const url = `${proc.baseUrl}/api/v1/tickets`;
    const headers = { 'content-type': 'application/json', authorization: `Bearer ${TEST_API_KEY}` };
    await httpLoad({ url, headers, body: (i) => ticketBody(i, 'warm'), total: 2000, concurrency: 64 });
    const meter = cpuMeter({ gateway: proc.child.pid!, broker, client: process.pid });
    const pgMeter = db ? postgresMeter(db.name) : null;
    const r = RATE
      ? await openLoop({ urls: [url], headers, body: (i) => ticketBody(i, 'prof'), total: N, rate: RATE }).then((o) => ({ perSecond: o.answeredPerSecond, failed: o.failed }))
      : await httpLoad({ url, headers, body: (i) => ticketBody(i, 'prof'), total: N, concurrency: 64 });
    await new Promise((res) => setTimeout(res, 1000));
    const cpu = meter.stop(N);
    const pgUs = pgMeter ? `, PostgreSQL ${fmt((pgMeter.stop() * 1000) / N)} µs` : '';
    console.log(`${fmt(r.perSecond)} tickets/s accepted${RATE ? ` (open loop at ${RATE}/s)` : ''} (${r.failed} failed); CPU per ticket: gateway ${fmt(cpu.gateway!)} µs${pgUs}, broker ${fmt(cpu.broker!)} µs, load generator ${fmt(cpu.client!)} µs`);
  } finally {
    proc.kill('SIGTERM');
    await proc.exited;
    await db?.drop().catch(() => {});
    rmSync(dataDir, { recursive: true, force: true });
    await vhost.drop();
  }
}

const file = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'))!;
const prof = JSON.parse(readFileSync(join(profDir, file), 'utf8')) as { nodes: Node[]; samples: number[]; timeDeltas: number[] };
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const self = new Map<number, number>();
prof.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0)));
const total = [...self.values()].reduce((a, b) => a + b, 0);
const byArea = new Map<string, number>();
const byFn = new Map<string, number>();
for (const [id, us] of self) {
  const n = byId.get(id)!;
  if (n.callFrame.functionName === '(idle)' || n.callFrame.functionName === '(program)') continue;
  const a = area(n.callFrame.url);
  byArea.set(a, (byArea.get(a) ?? 0) + us);
  const fn = `${n.callFrame.functionName || '(anonymous)'} ${a}:${n.callFrame.lineNumber + 1}`;
  byFn.set(fn, (byFn.get(fn) ?? 0) + us);
}
const idle = [...self].filter(([id]) => ['(idle)', '(program)'].includes(byId.get(id)!.callFrame.functionName)).reduce((a, [, us]) => a + us, 0);
const busy = total - idle;
const top = (m: Map<string, number>, k: number) =>
  [...m].sort((a, b) => b[1] - a[1]).slice(0, k).map(([name, us]) => `  ${fmt((100 * us) / busy, 1).padStart(5)} %  ${name}`);
console.log(`\nmain thread busy ${fmt(busy / 1000)} ms of ${fmt(total / 1000)} ms sampled; self time by area:`);
console.log(top(byArea, 25).join('\n'));
console.log('\nby function:');
console.log(top(byFn, 40).join('\n'));
console.log(`\nprofile: ${join(profDir, file)}`);
