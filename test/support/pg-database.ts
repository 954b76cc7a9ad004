import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** The shared PostgreSQL server of the test machine (trust auth); tests never stop it. */
export const PG_SERVER = 'postgres://postgres@127.0.0.1:5432';

export interface TestDatabase {
  name: string;
  url: string;
  /** Drops the database, closing whatever is still connected to it. Idempotent. */
  drop(): Promise<void>;
}

/** A database of its own for one test run on the shared server, dropped afterwards. */
export async function createTestDatabase(purpose = 'test'): Promise<TestDatabase> {
  const name = `gw_${purpose}_${randomBytes(5).toString('hex')}`;
  await admin(`CREATE DATABASE ${name}`);
  let dropped = false;
  return {
    name,
    url: `${PG_SERVER}/${name}`,
    async drop() {
      if (dropped) return;
      dropped = true;
      await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    },
  };
}

async function admin(sql: string): Promise<void> {
  const c = new pg.Client({ connectionString: `${PG_SERVER}/postgres` });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}
