import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { GatewayError } from '../../src/errors.js';
import { PostgresStore } from '../../src/store/postgres/index.js';
import { PG_SERVER } from '../support/postgres.js';
import { migrate, migrationsDir } from '../../src/store/postgres/migrate.js';
import { T0, acceptUnit, drain, movableClock, outboundRow, outboxRow, sleep, standardDecide, storeConformance, utcDay, type MovableClock } from './conformance.js';

/**
 * The store conformance suite and the cluster's own guarantees against a real
 * PostgreSQL on 127.0.0.1:5432. Each run works in a database of its own, created
 * here and dropped afterwards whatever the outcome.
 */

const SERVER = PG_SERVER;
const admin = new pg.Pool({ connectionString: `${SERVER}/postgres`, max: 2 });
const databases: string[] = [];

async function createDatabase(): Promise<string> {
  const name = `gw_store_${randomBytes(6).toString('hex')}`;
  await admin.query(`CREATE DATABASE ${name}`);
  databases.push(name);
  return `${SERVER}/${name}`;
}

const TABLES = ['tickets', 'ticket_counters', 'dedupe', 'refs', 'outbox', 'outbound', 'kv', 'parts', 'leases', 'attachments'];

describe('PostgreSQL store', function () {
  this.timeout(60_000);
  let url: string;
  let db: pg.Pool;
  /** Every store opened by a test, closed after it. */
  let open: PostgresStore[] = [];

  const start = async (clock: MovableClock, opts: { leaseMs?: number } = {}) => {
    const s = await PostgresStore.open({ url, clock, instanceId: `i-${randomBytes(4).toString('hex')}`, leaseMs: opts.leaseMs ?? 2000 });
    open.push(s);
    return s;
  };
  const closeAll = async () => {
    const stores = open;
    open = [];
    for (const s of stores) await s.close();
  };

  before(async () => {
    url = await createDatabase();
    db = new pg.Pool({ connectionString: url, max: 2 });
    // Creates the schema once; each test then starts from empty tables.
    await (await PostgresStore.open({ url, clock: movableClock(), instanceId: 'setup' })).close();
  });

  after(async () => {
    await closeAll();
    await db?.end();
    for (const name of databases) await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
  });

  const empty = () => db.query(`TRUNCATE ${TABLES.join(', ')} RESTART IDENTITY`);

  storeConformance('postgres', async (clock) => {
    await empty();
    const store = await start(clock);
    return { store, reopen: () => start(clock), cleanup: closeAll };
  });

  describe('schema', () => {
    it('warns at open when the server does not vacuum by itself, and only then', async () => {
      const off = (await db.query<{ autovacuum: string }>('SHOW autovacuum')).rows[0]!.autovacuum === 'off';
      const warned: string[] = [];
      const logger = { warn: (...a: unknown[]) => void warned.push(String(a.find((x) => typeof x === 'string'))), error: () => {} };
      const s = await PostgresStore.open({ url, clock: movableClock(), instanceId: `av-${randomBytes(3).toString('hex')}`, logger: logger as never });
      try {
        const about = (w: string) => w.startsWith('PostgreSQL autovacuum is off');
        expect(warned.some(about), `server autovacuum ${off ? 'off' : 'on'}`).to.equal(off);
        expect(s.serverWarnings.some(about)).to.equal(off);
      } finally {
        await s.close();
      }
    });

    it('instances starting together apply each migration once', async () => {
      const fresh = await createDatabase();
      const stores = await Promise.all(Array.from({ length: 4 }, (_, i) => PostgresStore.open({ url: fresh, clock: movableClock(), instanceId: `m${i}` })));
      const check = new pg.Client({ connectionString: fresh });
      await check.connect();
      try {
        const r = await check.query('SELECT version FROM schema_migrations ORDER BY version');
        // Every migration file, each recorded once (the list grows with the schema).
        const files = readdirSync(migrationsDir()).filter((f) => /^\d+_.*\.sql$/.test(f)).map((f) => f.replace(/\.sql$/, '')).sort();
        expect(files[0]).to.equal('001_init');
        expect(r.rows.map((x) => x.version)).to.deep.equal(files);
      } finally {
        await check.end();
        for (const s of stores) await s.close();
      }
    });

    it('applies pending migrations in file order, once each; a failing one is rolled back and not recorded', async () => {
      const fresh = await createDatabase();
      const dir = mkdtempSync(join(tmpdir(), 'gw-migrations-'));
      const pool = new pg.Pool({ connectionString: fresh, max: 4 });
      try {
        writeFileSync(join(dir, '002_more.sql'), 'ALTER TABLE a ADD COLUMN y integer;');
        writeFileSync(join(dir, '001_first.sql'), 'CREATE TABLE a (x integer);');
        writeFileSync(join(dir, 'notes.txt'), 'not a migration');
        const runs = await Promise.all([migrate(pool, dir), migrate(pool, dir), migrate(pool, dir)]);
        expect(runs.flat()).to.deep.equal(['001_first', '002_more']);
        writeFileSync(join(dir, '003_broken.sql'), 'ALTER TABLE a ADD COLUMN z integer; SELECT no_such_function();');
        const err = await migrate(pool, dir).then(
          () => null,
          (e: unknown) => e,
        );
        expect(err).to.be.instanceOf(Error);
        const cols = await pool.query(`SELECT column_name FROM information_schema.columns WHERE table_name = 'a' ORDER BY column_name`);
        expect(cols.rows.map((r) => r.column_name)).to.deep.equal(['x', 'y']);
        const done = await pool.query('SELECT version FROM schema_migrations ORDER BY version');
        expect(done.rows.map((r) => r.version)).to.deep.equal(['001_first', '002_more']);
        // The lock was given back despite the failure.
        writeFileSync(join(dir, '003_broken.sql'), 'ALTER TABLE a ADD COLUMN z integer;');
        expect(await migrate(pool, dir)).to.deep.equal(['003_broken']);
      } finally {
        await pool.end();
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('finds its migrations from the source tree', () => {
      expect(existsSync(join(migrationsDir(), '001_init.sql'))).to.equal(true);
    });

    it('an unreachable server is STORE_UNAVAILABLE at open', async () => {
      const err = await PostgresStore.open({ url: 'postgres://postgres@127.0.0.1:1/none', clock: movableClock(), instanceId: 'x' }).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).to.be.instanceOf(GatewayError);
      expect((err as GatewayError).code).to.equal('STORE_UNAVAILABLE');
      expect((err as GatewayError).transient).to.equal(true);
    });
  });

  describe('two instances on one database', () => {
    let clock: MovableClock;
    let a: PostgresStore;
    let b: PostgresStore;
    beforeEach(async () => {
      await empty();
      clock = movableClock();
      a = await start(clock, { leaseMs: 1000 });
      b = await start(clock, { leaseMs: 1000 });
    });
    afterEach(closeAll);

    it('the same message accepted on both at once is one ticket', async () => {
      for (const [key, windowMs] of [['keyed', null], ['windowed', 60_000]] as const) {
        const r = await Promise.all([a.accept(acceptUnit({ key, windowMs, channel: 'sms' })), b.accept(acceptUnit({ key, windowMs, channel: 'sms' }))]);
        expect(r.map((x) => x.status).sort()).to.deep.equal(['created', 'duplicate']);
        expect(r[0].record.id).to.equal(r[1].record.id);
      }
      expect(await drain(a)).to.have.length(2);
    });

    it('two keys implying one ticket id, accepted on both at once: the loser runs again and finds the duplicate', async () => {
      for (let round = 0; round < 5; round++) {
        const id = `k-shared-${round}`;
        const unitFor = (key: string) => {
          const u = acceptUnit({ key });
          return { ...u, keyedId: id, create: (ctx: Parameters<typeof u.create>[0]) => ({ ...u.create(ctx), id }) };
        };
        const r = await Promise.all([a.accept(unitFor(`x${round}`)), b.accept(unitFor(`y${round}`))]);
        expect(r.map((x) => x.status).sort()).to.deep.equal(['created', 'duplicate']);
        expect(r[0].record.id).to.equal(id);
        expect(r[1].record.id).to.equal(id);
      }
      expect(a.lastWriteError).to.equal(null);
      expect(b.lastWriteError).to.equal(null);
    });

    it('a value PostgreSQL cannot hold is a permanent INPUT_INVALID, not an outage', async () => {
      const err = await a.accept(acceptUnit({ key: 'nul\u0000key' })).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).to.be.instanceOf(GatewayError);
      expect((err as GatewayError).code).to.equal('INPUT_INVALID');
      expect((err as GatewayError).transient).to.equal(false);
      expect(a.lastWriteError).to.equal(null);
    });

    it("a unit whose closing write fails (sent with its COMMIT) commits nothing, reports the write's own error and gives its number back", async () => {
      const before = await a.accept(acceptUnit({ key: 'end-before' }));
      // The reads pass; the ticket's matter with a NUL is refused by the closing write itself.
      const err = await a.accept(acceptUnit({ key: 'end-bad', content: 'bad \u0000 matter' })).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).to.be.instanceOf(GatewayError);
      expect((err as GatewayError).code).to.equal('INPUT_INVALID');
      const left = await db.query<{ t: number; d: number; o: number }>(
        `SELECT (SELECT count(*)::int FROM tickets WHERE id = 'k-app-end-bad') AS t,
                (SELECT count(*)::int FROM dedupe WHERE key = 'end-bad') AS d,
                (SELECT count(*)::int FROM outbox WHERE message_id = 'k-app-end-bad') AS o`,
      );
      expect(left.rows[0]).to.deep.equal({ t: 0, d: 0, o: 0 });
      // The connection that ran it serves the next unit (the pool has connections to spare, so run several).
      const after = await Promise.all(['end-after-1', 'end-after-2', 'end-after-3'].map((key) => a.accept(acceptUnit({ key }))));
      expect(after.map((r) => r.status)).to.deep.equal(['created', 'created', 'created']);
      const seq = (n: string) => Number(n.split('-')[1]);
      expect(after.map((r) => seq(r.record.number)).sort((x, y) => x - y)[0]).to.equal(seq(before.record.number) + 1);
      expect(a.lastWriteError).to.equal(null);
    });

    it('200 concurrent accepts split over both get 200 distinct numbers', async () => {
      const r = await Promise.all(Array.from({ length: 200 }, (_, i) => (i % 2 ? a : b).accept(acceptUnit({ key: `s${i}` }))));
      const numbers = new Set(r.map((x) => x.record.number));
      expect(numbers.size).to.equal(200);
      expect(numbers.has(`${utcDay(T0)}-000200`)).to.equal(true);
    });

    it('numbers stay unique across both instances, block ends, a restart and a day change, and carry the day they were given on', async () => {
      const DAY = 86_400_000;
      const all: { number: string; createdAt: number }[] = [];
      const take = async (stores: PostgresStore[], n: number, tag: string) => {
        const r = await Promise.all(Array.from({ length: n }, (_, i) => stores[i % stores.length]!.accept(acceptUnit({ key: `${tag}${i}` }))));
        all.push(...r.map((x) => x.record));
      };
      // 150 each: past the end of each instance's first block of 100.
      await take([a, b], 300, 'd1-');
      // A restart of one instance (after a clean close) and one that never closed its predecessor.
      await a.close();
      const a2 = await start(clock, { leaseMs: 1000 });
      const c = await start(clock, { leaseMs: 1000 });
      await take([a2, b, c], 90, 'd1r-');
      // Midnight (UTC in these units): the next accepts are numbered in the new day, from 1.
      clock.advance(DAY);
      await take([a2, b, c], 90, 'd2-');
      const numbers = all.map((t) => t.number);
      expect(new Set(numbers).size).to.equal(numbers.length);
      for (const t of all) expect(t.number).to.match(new RegExp(`^${utcDay(t.createdAt)}-\\d{6}$`));
      const day2 = numbers.filter((n) => n.startsWith(utcDay(T0 + DAY))).sort();
      expect(day2).to.have.length(90);
      expect(day2[0]).to.equal(`${utcDay(T0 + DAY)}-000001`);
    });

    it('a number is never reused: not after a restart behind another instance, nor from a closed block another instance followed', async () => {
      const first = await a.accept(acceptUnit({ key: 'n1' }));
      const other = await b.accept(acceptUnit({ key: 'n2' }));
      // A's unused numbers are not handed back: B reserved after them.
      await a.close();
      const again = await start(clock, { leaseMs: 1000 });
      const third = await again.accept(acceptUnit({ key: 'n3' }));
      expect(first.record.number).to.equal(`${utcDay(T0)}-000001`);
      expect(other.record.number).to.equal(`${utcDay(T0)}-000101`);
      expect(third.record.number).to.equal(`${utcDay(T0)}-000201`);
    });

    it('an accept does not wait for the day counter: a unit elsewhere holding its row stalls nobody', async () => {
      await a.accept(acceptUnit({ key: 'warm' }));
      const holder = await db.connect();
      try {
        await holder.query('BEGIN');
        await holder.query(`SELECT last FROM ticket_counters WHERE day = $1 FOR UPDATE`, [utcDay(T0)]);
        const t0 = Date.now();
        const r = await Promise.all([1, 2, 3].map((i) => a.accept(acceptUnit({ key: `free${i}` }))));
        expect(r.map((x) => x.status)).to.deep.equal(['created', 'created', 'created']);
        expect(Date.now() - t0).to.be.below(5000);
      } finally {
        await holder.query('ROLLBACK');
        holder.release();
      }
    });

    it('commits wake other instances (NOTIFY) only while this instance\'s relay is not taking rows itself', async () => {
      const listener = new pg.Client({ connectionString: url });
      const heard: string[] = [];
      listener.on('notification', (n) => heard.push(n.payload ?? ''));
      await listener.connect();
      try {
        await listener.query('LISTEN gateway_outbox');
        // A's relay has just taken: A publishes its own rows, nobody else needs waking.
        await a.takeOutbox(10);
        await a.append({ outbox: [outboxRow('quiet')] });
        await sleep(150);
        expect(heard).to.deep.equal([]);
        // A's relay has stopped taking (its broker link down, say): the others are woken again.
        await sleep(400);
        await a.append({ outbox: [outboxRow('loud')] });
        for (let i = 0; i < 40 && heard.length === 0; i++) await sleep(50);
        expect(heard).to.have.length(1);
        expect(heard[0]).to.match(/ 1$/);
      } finally {
        await listener.end();
      }
    });

    it('fireDue on both at once fires each event once', async () => {
      for (let i = 0; i < 60; i++) await a.accept(acceptUnit({ key: `f${i}` }));
      await drain(a);
      const fired = (await Promise.all([a, b, a, b].map((s) => s.fireDue(T0 + 1000, 25, standardDecide(T0 + 1000))))).flat();
      const more = (await Promise.all([a, b].map((s) => s.fireDue(T0 + 1000, 100, standardDecide(T0 + 1000))))).flat();
      const ids = [...fired, ...more].map((x) => x.due.ticketId);
      expect(ids).to.have.length(60);
      expect(new Set(ids).size).to.equal(60);
      // A's relay has just taken, so A's events are written taken by A (published from its memory); B's wait in the table.
      const published = [...(await drain(a)), ...(await drain(b))];
      expect(published).to.have.length(60);
      expect(new Set(published.map((m) => m.messageId)).size).to.equal(60);
    });

    it("another instance's commit wakes this relay, and its rows are this one's to take", async () => {
      let woken = 0;
      b.onOutbox = () => woken++;
      await a.append({ outbox: [outboxRow('from-a')] });
      for (let i = 0; i < 60 && woken === 0; i++) await sleep(50);
      expect(woken).to.be.greaterThan(0);
      expect((await b.takeOutbox(10)).map((m) => m.messageId)).to.deep.equal(['from-a']);
      expect(await a.takeOutbox(10)).to.deep.equal([]);
    });

    it("a dead instance's outbox rows are taken by another once its lease lapses", async () => {
      await a.append({ outbox: [outboxRow('r1'), outboxRow('r2')] });
      expect(await a.takeOutbox(10)).to.have.length(2);
      // Held rows stay held while A renews them, well past one lease.
      await sleep(1500);
      expect(await b.takeOutbox(10)).to.deep.equal([]);
      let woken = 0;
      b.onOutbox = () => woken++;
      // A dies: its connections go, and with them the renewals.
      await a.pool.end();
      const t0 = Date.now();
      // B's once-a-second look finds the lapsed rows and wakes its relay without being asked.
      while (woken === 0 && Date.now() - t0 < 10_000) await sleep(50);
      expect(woken).to.be.greaterThan(0);
      // Within the lease plus one poll (slack for a busy machine), far inside the contract's 15 s.
      expect(Date.now() - t0).to.be.below(5000);
      expect((await b.takeOutbox(10)).map((m) => m.messageId)).to.deep.equal(['r1', 'r2']);
    });

    it('rows handed back one by one go to the other instance at once; what the relay still holds stays renewed; a row it forgot lapses', async () => {
      await a.append({ outbox: [outboxRow('k1'), outboxRow('k2'), outboxRow('k3')] });
      const [k1, k2, k3] = await a.takeOutbox(10);
      await a.releaseOutbox([k1!.seq]);
      expect((await b.takeOutbox(10)).map((m) => m.messageId)).to.deep.equal(['k1']);
      // A row A's relay no longer publishes, though the database still names A as its holder
      // (its hand-back never reached PostgreSQL): A's renewals leave it, so it lapses.
      const aHeld = (a as unknown as { held: Set<number> }).held;
      aHeld.delete(k3!.seq);
      await sleep(1600);
      expect((await b.takeOutbox(10)).map((m) => m.messageId), 'k2 renewed by A, k3 lapsed').to.deep.equal(['k3']);
      expect(aHeld.has(k2!.seq)).to.equal(true);
    });

    it("outboxSummary counts a dead instance's rows as lapsed once its lease is over", async () => {
      await a.append({ outbox: [outboxRow('l1'), outboxRow('l2'), outboxRow('l3')] });
      expect(await a.takeOutbox(2)).to.have.length(2);
      expect(await b.outboxSummary()).to.include({ depth: 3, taken: 2, lapsed: 0 });
      await a.pool.end();
      let s = await b.outboxSummary();
      for (let i = 0; i < 60 && s.lapsed === 0; i++) {
        await sleep(50);
        s = await b.outboxSummary();
      }
      expect(s).to.include({ depth: 3, taken: 0, lapsed: 2 });
    });

    it('while its relay takes, an instance writes its outbox rows taken by itself and hands them over without a statement', async () => {
      await a.takeOutbox(10);
      await a.append({ outbox: [outboxRow('own1'), outboxRow('own2')] });
      const held = await db.query<{ message_id: string; owner: string | null; leased: boolean }>(
        `SELECT message_id, owner, lease_until > clock_timestamp() AS leased FROM outbox ORDER BY seq`,
      );
      const aId = (a as unknown as { instanceId: string }).instanceId;
      expect(held.rows).to.deep.equal([
        { message_id: 'own1', owner: aId, leased: true },
        { message_id: 'own2', owner: aId, leased: true },
      ]);
      expect(await b.takeOutbox(10), 'taken by A from the start').to.deep.equal([]);
      expect(a.readyCount()).to.equal(2);
      expect(await a.hasUntaken()).to.equal(true);
      const rows = await a.takeOutbox(10);
      expect(rows.map((m) => m.messageId)).to.deep.equal(['own1', 'own2']);
      // The same message a take from the table returns: seq, routing key, headers, body.
      const again = await db.query<{ seq: number }>(`SELECT seq FROM outbox ORDER BY seq`);
      expect(rows.map((m) => m.seq)).to.deep.equal(again.rows.map((r) => Number(r.seq)));
      expect(rows[0]).to.deep.include({ routingKey: 'test.own1', type: 'test.event', headers: { id: 'own1', n: 1 } });
      expect(JSON.parse(rows[0]!.body)).to.deep.equal({ id: 'own1' });
      await a.confirmOutbox(rows.map((m) => m.seq));
      expect((await db.query(`SELECT count(*)::int AS n FROM outbox`)).rows[0].n).to.equal(0);
    });

    it('rows its relay leaves untaken go back to the table, for any relay, in seq order', async () => {
      await a.takeOutbox(10);
      await a.append({ outbox: [outboxRow('s1'), outboxRow('s2')] });
      expect(await b.takeOutbox(10)).to.deep.equal([]);
      // A's broker link is down, say: its relay takes nothing, and A's poll hands the rows back.
      const owners = async () => (await db.query<{ owner: string | null }>(`SELECT owner FROM outbox ORDER BY seq`)).rows.map((r) => r.owner);
      for (let i = 0; i < 80 && (await owners()).some((o) => o !== null); i++) await sleep(50);
      expect(await owners()).to.deep.equal([null, null]);
      // Untaken rows wait in the table now, so A writes its next rows untaken too: none overtakes them.
      await a.append({ outbox: [outboxRow('s3')] });
      expect(await owners()).to.deep.equal([null, null, null]);
      expect((await b.takeOutbox(10)).map((m) => m.messageId)).to.deep.equal(['s1', 's2', 's3']);
      expect(await a.takeOutbox(10), "no longer in A's memory").to.deep.equal([]);
    });

    it('a relay that takes slowly keeps the rows written for it, their lease renewed past its length', async () => {
      await a.takeOutbox(10);
      await a.append({ outbox: Array.from({ length: 6 }, (_, i) => outboxRow(`w${i}`)) });
      const got: string[] = [];
      // One row every 250 ms: 1.5 s in all, past the 1 s lease and the hand-back wait.
      for (let i = 0; i < 6; i++) {
        await sleep(250);
        expect(await b.takeOutbox(10), `B, after ${(i + 1) * 250} ms`).to.deep.equal([]);
        got.push(...(await a.takeOutbox(1)).map((m) => m.messageId));
      }
      expect(got).to.deep.equal(['w0', 'w1', 'w2', 'w3', 'w4', 'w5']);
      const leased = await db.query<{ ok: boolean }>(`SELECT bool_and(lease_until > clock_timestamp()) AS ok FROM outbox`);
      expect(leased.rows[0]!.ok).to.equal(true);
    });

    it('a relay that reconnects hands back its rows, those in memory too', async () => {
      await a.takeOutbox(10);
      await a.append({ outbox: [outboxRow('m1')] });
      await a.releaseOutbox();
      expect(await a.hasUntaken()).to.equal(true);
      expect((await b.takeOutbox(10)).map((m) => m.messageId)).to.deep.equal(['m1']);
      expect(await a.takeOutbox(10)).to.deep.equal([]);
    });

    it('confirms arriving one by one are deleted together; close deletes what is still waiting', async () => {
      await a.append({ outbox: Array.from({ length: 6 }, (_, i) => outboxRow(`c${i}`)) });
      const rows = await a.takeOutbox(10);
      // Counts DELETE statements on the outbox (a statement-level trigger, this test's only).
      await db.query(`CREATE TABLE outbox_deletes (n int NOT NULL); INSERT INTO outbox_deletes VALUES (0);
        CREATE FUNCTION count_outbox_delete() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN UPDATE outbox_deletes SET n = n + 1; RETURN NULL; END $$;
        CREATE TRIGGER outbox_deletes AFTER DELETE ON outbox FOR EACH STATEMENT EXECUTE FUNCTION count_outbox_delete();`);
      try {
        await Promise.all(rows.slice(0, 4).map((r) => a.confirmOutbox([r.seq])));
        expect((await db.query(`SELECT n FROM outbox_deletes`)).rows[0].n, 'one statement for four confirms').to.equal(1);
        expect(a.outboxDepth()).to.equal(2);
        const late = a.confirmOutbox([rows[4]!.seq]);
        await a.close();
        await late;
        expect((await db.query(`SELECT message_id FROM outbox ORDER BY seq`)).rows.map((r) => r.message_id)).to.deep.equal(['c5']);
      } finally {
        await db.query(`DROP TRIGGER outbox_deletes ON outbox; DROP FUNCTION count_outbox_delete(); DROP TABLE outbox_deletes`);
      }
    });

    it('close hands the rows it holds back at once', async () => {
      await a.append({ outbox: [outboxRow('h1')] });
      expect(await a.takeOutbox(10)).to.have.length(1);
      await a.close();
      expect((await b.takeOutbox(10)).map((m) => m.messageId)).to.deep.equal(['h1']);
    });

    it('parts of one message arriving on both make one group', async () => {
      for (let round = 0; round < 10; round++) {
        const g = `long-${round}`;
        const [pa, pb] = await Promise.all([a.putPart('sms', g, 1, Buffer.from('one'), 'm'), b.putPart('sms', g, 2, Buffer.from('two'), 'm')]);
        // Whichever committed second saw the whole message.
        expect(Math.max(pa.length, pb.length)).to.equal(2);
      }
    });

    it('a lease is handed over once its ttl passed', async () => {
      expect(await a.acquireLease('imap', 'A', 500)).to.equal(true);
      expect(await b.acquireLease('imap', 'B', 500)).to.equal(false);
      await sleep(700);
      expect(await b.acquireLease('imap', 'B', 500)).to.equal(true);
      expect(await a.acquireLease('imap', 'A', 500)).to.equal(false);
    });

    it('leases and claims follow the database clock, whatever the instances think the time is', async () => {
      const ahead = movableClock(T0 + 3_600_000);
      const c = await start(ahead, { leaseMs: 1000 });
      expect(await a.acquireLease('telegram', 'A', 5000)).to.equal(true);
      expect(await c.acquireLease('telegram', 'C', 5000)).to.equal(false);
      await a.append({ outbox: [outboxRow('skew')] });
      expect(await a.takeOutbox(10)).to.have.length(1);
      expect(await c.takeOutbox(10)).to.deep.equal([]);
      await c.append({ outbound: [outboundRow('notice:skew', null, T0)] });
      expect(await a.claimOutbound(T0, 10, 'sender-a', 5000)).to.have.length(1);
      expect(await c.claimOutbound(ahead.now(), 10, 'sender-c', 5000)).to.deep.equal([]);
    });

    it('attachments saved on one instance are read on the other', async () => {
      const data = Buffer.from([1, 2, 3, 0, 255]);
      const saved = await a.attachmentStore(1000).save({ fileName: 'p.jpg', mimeType: 'image/jpeg', data });
      expect(saved.url).to.equal(`/api/v1/attachments/${saved.sha256}`);
      expect(saved.size).to.equal(5);
      await a.attachmentStore(1000).save({ fileName: 'again.jpg', mimeType: 'image/jpeg', data });
      expect((await b.attachmentStore(1000).read(saved.sha256))?.equals(data)).to.equal(true);
      expect(await b.attachmentStore(1000).read('0'.repeat(64))).to.equal(null);
      const tooBig = await a
        .attachmentStore(2)
        .save({ fileName: 'big', mimeType: 'x', data })
        .catch((e: unknown) => e);
      expect((tooBig as GatewayError).code).to.equal('INPUT_TOO_LARGE');
    });

    it('connections cut by the server: units fail as STORE_UNAVAILABLE, then recover by themselves, LISTEN included', async () => {
      const cut = () => db.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'gateway %' AND pid <> pg_backend_pid()`);
      await Promise.all([a.probe(), b.probe()]);
      await cut();
      const errors: unknown[] = [];
      let ok = false;
      for (let i = 0; i < 50 && !ok; i++) {
        try {
          await a.kvSet('app', 'k', String(i));
          ok = true;
        } catch (err) {
          errors.push(err);
          await sleep(50);
        }
      }
      expect(ok).to.equal(true);
      for (const e of errors) expect((e as GatewayError).code).to.equal('STORE_UNAVAILABLE');
      expect(a.lastWriteError).to.equal(null);
      expect(await a.probe()).to.equal(null);
      // B's listener comes back within about a second and hears A again.
      await sleep(1500);
      let woken = 0;
      b.onOutbox = () => woken++;
      await a.append({ outbox: [outboxRow('after-cut')] });
      for (let i = 0; i < 60 && woken === 0; i++) await sleep(50);
      expect(woken).to.be.greaterThan(0);
    });
  });
});
