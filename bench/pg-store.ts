/**
 * Accepts through PostgresStore itself: N accepts, 32 in flight, spread over
 * `instances` stores on one scratch database (created and dropped here). Prints
 * accepts/s and this process's CPU µs per accept.
 *
 *   node --import tsx bench/pg-store.ts [postgres://postgres@127.0.0.1:5432/postgres] [accepts=2000] [instances=2]
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { PostgresStore } from '../src/store/postgres/index.js';
import { acceptUnit, movableClock } from '../test/store/conformance.js';

const adminUrl = process.argv[2] ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const N = Number(process.argv[3] ?? 2000);
const INSTANCES = Number(process.argv[4] ?? 2);
const CONCURRENCY = 32;

const admin = new pg.Client({ connectionString: adminUrl });
await admin.connect();
const db = `gw_bench_${randomBytes(4).toString('hex')}`;
await admin.query(`CREATE DATABASE ${db}`);
const url = new URL(adminUrl);
url.pathname = `/${db}`;
try {
  const clock = movableClock(Date.now());
  const stores = await Promise.all(Array.from({ length: INSTANCES }, (_, i) => PostgresStore.open({ url: url.toString(), clock, instanceId: `b${i}`, poolSize: Math.ceil(CONCURRENCY / INSTANCES) })));
  let next = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async (_, w) => {
      while (next < N) {
        const i = next++;
        await stores[w % INSTANCES]!.accept(acceptUnit({ key: `k${i}`, citizenKey: `c${i % 500}` }));
      }
    }),
  );
  const s = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  console.log(`${N} accepts over ${INSTANCES} instance(s), ${CONCURRENCY} in flight: ${(N / s).toFixed(0)} accepts/s, ${((cpu.user + cpu.system) / N).toFixed(0)} µs CPU/accept`);
  for (const st of stores) await st.close();
} finally {
  await admin.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
  await admin.end();
}
