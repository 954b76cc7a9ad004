import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import type pg from 'pg';

/** Any fixed 64-bit key: the one session-level advisory lock migrations run under. */
const MIGRATION_LOCK = 7_361_245_001;

/**
 * The migrations directory. The build (tsc) does not copy .sql files, so a
 * compiled module under dist/ reads them from the source tree it was built from.
 */
export function migrationsDir(): string {
  const here = fileURLToPath(new URL('./migrations/', import.meta.url));
  if (existsSync(here)) return here;
  const fromDist = here.replace(/([\\/])dist[\\/]src[\\/]/, '$1src$1');
  return fromDist;
}

/**
 * Applies the migrations not yet recorded in schema_migrations, in file-name
 * order, each in its own transaction. Instances that start together queue on one
 * advisory lock, so each file runs once and a late starter finds it recorded.
 */
export async function migrate(pool: pg.Pool, dir: string = migrationsDir()): Promise<string[]> {
  const files = readdirSync(dir)
    .filter((f) => /^\d+_.*\.sql$/.test(f))
    .sort();
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
    try {
      await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT clock_timestamp())`);
      const done = new Set((await client.query<{ version: string }>('SELECT version FROM schema_migrations')).rows.map((r) => r.version));
      const applied: string[] = [];
      for (const file of files) {
        const version = file.replace(/\.sql$/, '');
        if (done.has(version)) continue;
        const sql = readFileSync(join(dir, file), 'utf8');
        await client.query('BEGIN');
        try {
          await client.query(sql);
          await client.query('INSERT INTO schema_migrations (version) VALUES ($1)', [version]);
          await client.query('COMMIT');
        } catch (err) {
          await client.query('ROLLBACK').catch(() => {});
          throw err;
        }
        applied.push(version);
      }
      return applied;
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch((err: Error) => {
        // The connection is gone, and its session lock with it; do not hand it back to the pool.
        broken = err;
      });
    }
  } catch (err) {
    broken ??= err as Error;
    throw err;
  } finally {
    client.release(broken);
  }
}
