import { rmSync } from 'node:fs';
import { loadConfig } from '../src/config.js';
import { Gateway } from '../src/gateway.js';
import { tempDir } from '../test/support/gateway.js';
import { createLogger } from '../src/log.js';

/**
 * The intake alone, without HTTP or broker: `accept()` time per ticket with 64 in
 * flight, for profiling the store (`node --cpu-prof --import tsx bench/intake.ts`).
 * Arguments: REPEAT_WINDOW (default 72h), STORE_SYNC (default full).
 */
const dir = tempDir('bench-intake-');
const gw = new Gateway(
  loadConfig({}, { DATA_DIR: dir, AMQP_URL: 'amqp://guest:guest@127.0.0.1:1', LOG_LEVEL: 'silent', HTTP_PORT: 0, REPEAT_WINDOW: process.argv[2] ?? '72h', STORE_SYNC: process.argv[3] ?? 'full' }),
  { logger: createLogger('silent'), adapters: [] },
);
const N = 20_000;
const content = '暴雨后小区门口积水严重，车辆无法通行，请尽快处理。'.padEnd(300, '。');
for (let round = 0; round < 3; round++) {
  const t0 = performance.now();
  const batch: Promise<unknown>[] = [];
  for (let i = 0; i < N; i++) {
    const id = `r${round}-${i}`;
    const phone = `+86138${String(i % 5000).padStart(8, '0')}`;
    batch.push(
      gw.intake.accept(
        { channel: 'app', dedupeKey: id, channelMessageIds: [id], sentAt: null, citizen: { channelUserId: `c${i % 5000}`, phone, email: null, name: null }, subject: null, content, attachments: [], location: null, incomplete: false, source: {}, raw: content },
        { acknowledgedVia: 'http-response' },
      ),
    );
    if (batch.length >= 64) {
      await Promise.all(batch);
      batch.length = 0;
    }
  }
  await Promise.all(batch);
  console.log(`round ${round + 1}: accept ${((performance.now() - t0) / N * 1000).toFixed(1)} µs/ticket (${N} tickets, ${(round + 1) * N} in the store)`);
}
await gw.store.close();
rmSync(dir, { recursive: true, force: true });
process.exit(0);
