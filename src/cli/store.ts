import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import type { Config } from '../config.js';
import { systemClock } from '../clock.js';
import { GatewayError } from '../errors.js';
import { SqliteStore } from '../store/sqlite/index.js';
import type { Store } from '../store/types.js';

/** The journal file the embedded store keeps in DATA_DIR. */
export function sqliteFile(config: Config): string {
  return join(resolve(config.DATA_DIR), 'gateway.sqlite');
}

/** Where the store is, as it may be printed (credentials are masked by the printer). */
export function storeName(config: Config): string {
  return config.DATABASE_URL ? `postgres ${config.DATABASE_URL}` : `sqlite ${config.DATA_DIR}`;
}

/**
 * The store the gateway of this configuration uses, opened beside it: PostgreSQL
 * under an instance id of its own (it never takes outbox rows, so it holds no lease),
 * or the SQLite file in DATA_DIR, which a second process may read and write in small
 * units while the gateway runs (WAL, busy_timeout). A missing SQLite journal is an
 * error rather than a new empty one: DATA_DIR then names no gateway's data.
 */
export async function openStore(config: Config): Promise<Store> {
  if (config.DATABASE_URL) {
    const { PostgresStore } = await import('../store/postgres/index.js');
    return PostgresStore.open({ url: config.DATABASE_URL, clock: systemClock, instanceId: `cli:${hostname()}:${process.pid}`, poolSize: 2 });
  }
  const file = sqliteFile(config);
  if (!existsSync(file)) throw new GatewayError('STORE_UNAVAILABLE', `no journal at ${file}: DATA_DIR does not hold a gateway's data`);
  return new SqliteStore(config.DATA_DIR, { sync: config.STORE_SYNC, checkpointEveryMs: 0 }, systemClock);
}
