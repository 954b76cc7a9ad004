import pg from 'pg';
import { GatewayError } from '../../errors.js';

/** A connection inside one unit's transaction (or the pool, for single-statement reads). */
export type Db = pg.PoolClient | pg.Pool;

/**
 * Every statement runs as a named prepared statement: parsed and planned once per
 * connection instead of on each call. Names are handed out per distinct text, so
 * each statement's text must be fixed (lists go in as arrays, never spliced in).
 */
const names = new Map<string, string>();

export async function query<R extends pg.QueryResultRow>(db: Db, text: string, values: unknown[] = []): Promise<pg.QueryResult<R>> {
  let name = names.get(text);
  if (name === undefined) {
    name = `gw${names.size}`;
    names.set(text, name);
  }
  return db.query<R>({ name, text, values });
}

/**
 * Runs `send` with the connection's socket corked, so the statements it sends
 * leave in one write. In pipeline mode the driver writes each statement as soon as
 * it is queued; on this path a write to the server is the costly part (a system
 * call that wakes the server's backend), not the bytes.
 */
export function corked<T>(c: pg.PoolClient, send: () => T): T {
  const stream = (c as unknown as { connection?: { stream?: { cork?: () => void; uncork?: () => void } } }).connection?.stream;
  if (typeof stream?.cork !== 'function' || typeof stream.uncork !== 'function') return send();
  stream.cork();
  try {
    return send();
  } finally {
    stream.uncork();
  }
}

export async function rows<R extends pg.QueryResultRow>(db: Db, text: string, values: unknown[] = []): Promise<R[]> {
  return (await query<R>(db, text, values)).rows;
}

export async function first<R extends pg.QueryResultRow>(db: Db, text: string, values: unknown[] = []): Promise<R | undefined> {
  return (await query<R>(db, text, values)).rows[0];
}

/**
 * An error thrown by a caller's callback inside a unit (create(), a change
 * builder, decide()): carried through the rollback and rethrown unchanged, so a
 * refused input stays the permanent error it is instead of looking like an outage.
 */
export class CallbackFailure {
  constructor(readonly error: unknown) {}
}

export function callback<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw new CallbackFailure(err);
  }
}

/**
 * Driver and server errors become STORE_UNAVAILABLE (transient: the upstream
 * retries); the gateway's own pass unchanged. A data exception (SQLSTATE class
 * 22: a NUL character in a text value, an out-of-range number) is the input's
 * fault and would fail the same way on every retry, so it is a permanent
 * INPUT_INVALID instead.
 */
export function storeError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  const code = pgCode(err).code;
  if (code?.startsWith('22')) {
    return new GatewayError('INPUT_INVALID', `the store refused a value: ${(err as Error).message}`, { transient: false, cause: err, detail: code });
  }
  return new GatewayError('STORE_UNAVAILABLE', `store unavailable: ${(err as Error)?.message ?? String(err)}`, {
    cause: err,
    detail: (err as { code?: string })?.code,
  });
}

/** A PostgreSQL error's SQLSTATE and constraint, when it is one. */
export function pgCode(err: unknown): { code?: string; constraint?: string } {
  if (err && typeof err === 'object') {
    const e = err as { code?: unknown; constraint?: unknown };
    return { code: typeof e.code === 'string' ? e.code : undefined, constraint: typeof e.constraint === 'string' ? e.constraint : undefined };
  }
  return {};
}

/** bigint columns hold epoch milliseconds and sequence numbers, all far below 2^53: read them as numbers. */
export const types: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
    if (oid === pg.types.builtins.INT8 && format !== 'binary') return (v: string) => Number(v);
    return pg.types.getTypeParser(oid, format);
  }) as pg.CustomTypesConfig['getTypeParser'],
};

/** Milliseconds as an interval added to the database clock. */
export const MS = `* interval '1 millisecond'`;
