import { rmSync } from 'node:fs';
import amqp from 'amqplib';
import { Journal } from '../src/store/sqlite/journal.js';
import { spawnGateway, tempDir, TEST_API_KEY } from '../test/support/gateway.js';
import { brokerReady, percentile } from './lib.js';

export interface DeadlineScaleResult {
  open: number;
  rssMb: number;
  lagP50Ms: number;
  lagP99Ms: number;
  lagMaxMs: number;
  fired: number;
}

/**
 * How the gateway copes with many open deadlines: `open` open tickets (deadlines due in a
 * day) are written into the store before the gateway starts, then `probe` tickets
 * with a 3 s deadline are posted and the lateness of their breach events measured,
 * with the gateway's RSS.
 */
export async function benchDeadlines(amqpUrl: string, open: number, probe = 200): Promise<DeadlineScaleResult> {
  const dataDir = tempDir('bench-dl-');
  const store = new Journal(dataDir, { sync: 'normal' });
  const due = Date.now() + 86_400_000;
  // Open tickets as the intake writes them (a deadline lives on its ticket), with a small body.
  const insert = store.db.prepare(
    `INSERT INTO tickets (id, number, channel, citizen_key, created_at, respond_by, matter, body, raw, due_at, due_kind)
     VALUES (?, ?, 'app', ?, ?, ?, '', '{}', x'', ?, 'warning')`,
  );
  const batch = store.db.transaction((from: number, to: number) => {
    for (let i = from; i < to; i++) {
      insert.run(`bench-${i}`, `19700101-${String(i).padStart(7, '0')}`, `c${i}`, due - 86_400_000, due + i + 1000, due + i);
    }
  });
  for (let i = 0; i < open; i += 50_000) batch(i, Math.min(open, i + 50_000));
  await store.close();

  const proc = await spawnGateway({ AMQP_URL: amqpUrl, DATA_DIR: dataDir, APP_API_KEYS: `bench:${TEST_API_KEY}`, APP_RATE_LIMIT: '1000000', LOG_LEVEL: 'warn', DEADLINE_MESSAGE: '3s' }, { compiled: true });
  await brokerReady(proc.baseUrl);
  const conn = await amqp.connect(amqpUrl);
  const lags: number[] = [];
  try {
    const ch = await conn.createChannel();
    const respondBy = new Map<string, number>();
    await ch.consume('tickets.events', (m) => {
      if (!m) return;
      ch.ack(m);
      if (!m.fields.routingKey.startsWith('ticket.deadline.breached.')) return;
      const body = JSON.parse(m.content.toString()) as { ticketId: string; at: string; respondBy: string };
      lags.push(Date.parse(body.at) - Date.parse(body.respondBy));
      respondBy.delete(body.ticketId);
    });
    const tag = Date.now().toString(36);
    for (let i = 0; i < probe; i++) {
      const r = await fetch(`${proc.baseUrl}/api/v1/tickets`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${TEST_API_KEY}` },
        body: JSON.stringify({ clientMessageId: `dl-${tag}-${i}`, citizen: { id: `c${i}` }, content: `路灯不亮 ${i}` }),
      });
      const b = (await r.json()) as { id: string; respondBy: string };
      respondBy.set(b.id, Date.parse(b.respondBy));
      // Spread the due times over about a second, as real traffic would.
      if (i % 20 === 19) await new Promise((res) => setTimeout(res, 100));
    }
    const until = Date.now() + 30_000;
    while (lags.length < probe && Date.now() < until) await new Promise((res) => setTimeout(res, 50));
    const status = (await import('node:fs')).readFileSync(`/proc/${proc.child.pid}/status`, 'utf8');
    const rssMb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
    lags.sort((a, b) => a - b);
    return { open, rssMb, lagP50Ms: percentile(lags, 50), lagP99Ms: percentile(lags, 99), lagMaxMs: lags.at(-1) ?? NaN, fired: lags.length };
  } finally {
    await conn.close().catch(() => {});
    proc.kill('SIGTERM');
    await proc.exited;
    rmSync(dataDir, { recursive: true, force: true });
  }
}
