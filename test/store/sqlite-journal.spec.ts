import { expect } from 'chai';
import Database from 'better-sqlite3';
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Journal } from '../../src/store/sqlite/journal.js';
import { tempDir } from '../support/gateway.js';

/** The layout the first release wrote: deadlines as rows of their own, a counters table, outbox rows holding full bodies. */
const FIRST_RELEASE_SCHEMA = `
CREATE TABLE tickets (
  id TEXT PRIMARY KEY, number TEXT NOT NULL UNIQUE, channel TEXT NOT NULL, citizen_key TEXT NOT NULL,
  created_at INTEGER NOT NULL, respond_by INTEGER NOT NULL, state TEXT NOT NULL DEFAULT 'open',
  acknowledged_at INTEGER, responded_at INTEGER, breached INTEGER NOT NULL DEFAULT 0,
  matter TEXT NOT NULL, repeat_of TEXT, body TEXT NOT NULL, raw BLOB NOT NULL
);
CREATE TABLE counters (day TEXT PRIMARY KEY, last INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE outbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, routing_key TEXT NOT NULL, message_id TEXT NOT NULL, type TEXT NOT NULL,
  headers TEXT NOT NULL, body TEXT NOT NULL, created_at INTEGER NOT NULL
);
CREATE TABLE deadlines (
  ticket_id TEXT NOT NULL, kind TEXT NOT NULL, due_at INTEGER NOT NULL, PRIMARY KEY (ticket_id, kind)
) WITHOUT ROWID;
CREATE INDEX deadlines_due ON deadlines(due_at);
`;

const msg = (id: string, body: unknown = { id }) => ({ routingKey: `r.${id}`, messageId: id, type: 'ticket.created', headers: { channel: 'app' }, body });

for (const sync of ['full', 'normal'] as const) describe(`SQLite journal (sync ${sync})`, () => {
  let dir: string;
  let store: Journal | null = null;
  beforeEach(() => {
    dir = tempDir('store-');
  });
  afterEach(async () => {
    await store?.close();
    store = null;
    rmSync(dir, { recursive: true, force: true });
  });

  it('opens a file of the first release: deadlines move onto their tickets, numbers continue, old outbox rows still publish', async () => {
    mkdirSync(dir, { recursive: true });
    const old = new Database(join(dir, 'gateway.sqlite'));
    old.exec(FIRST_RELEASE_SCHEMA);
    const ticket = (id: string, number: string, respondBy: number) =>
      old.prepare(`INSERT INTO tickets (id, number, channel, citizen_key, created_at, respond_by, matter, body, raw) VALUES (?, ?, 'sms', 'c', 0, ?, '', ?, x'')`).run(id, number, respondBy, JSON.stringify({ id }));
    ticket('a', '20261130-000001', 2000);
    ticket('b', '20261130-000002', 5000);
    ticket('c', '20261130-000003', 9000);
    const dl = old.prepare(`INSERT INTO deadlines VALUES (?, ?, ?)`);
    dl.run('a', 'warning', 1000); // both pending
    dl.run('a', 'breach', 2000);
    dl.run('b', 'breach', 5000); // warning already fired
    // c: replied, nothing pending
    old.prepare(`INSERT INTO counters VALUES ('20261130', 3)`).run();
    old.prepare(`INSERT INTO outbox (routing_key, message_id, type, headers, body, created_at) VALUES ('r.a', 'a', 'ticket.created', '{"channel":"sms"}', '{"id":"a"}', 0)`).run();
    old.close();

    store = new Journal(dir, { sync });
    expect(store.dueDeadlines(10_000, 10)).to.deep.equal([
      { ticket_id: 'a', kind: 'warning', due_at: 1000, respond_by: 2000 },
      { ticket_id: 'b', kind: 'breach', due_at: 5000, respond_by: 5000 },
    ]);
    expect(store.openDeadlines()).to.equal(2);
    expect(store.db.prepare(`SELECT name FROM sqlite_master WHERE name = 'deadlines'`).get()).to.equal(undefined);
    expect(await store.run(() => store!.nextNumber('20261130'))).to.equal(4);
    expect(store.readOutbox(0, 10)).to.deep.equal([{ seq: 1, routingKey: 'r.a', messageId: 'a', type: 'ticket.created', headers: { channel: 'sms' }, body: '{"id":"a"}', createdAt: 0 }]);
    await store.close();
    // Opening again is a no-op.
    store = new Journal(dir, { sync });
    expect(store.openDeadlines()).to.equal(2);
  });

  it('a fired warning moves the ticket on to its breach; a reply clears it; a stale move is refused', async () => {
    store = new Journal(dir, { sync });
    const s = store;
    await s.run(() =>
      s.insertTicket({ id: 't', number: '20261130-000001', channel: 'app', citizen_key: 'c', created_at: 0, respond_by: 3000, acknowledged_at: null, matter: '', repeat_of: null, body: '{}' }, Buffer.alloc(0), { kind: 'warning', at: 2400 }),
    );
    expect(await s.run(() => s.advanceDue('t', { kind: 'warning', at: 2400 }, { kind: 'breach', at: 3000 }))).to.equal(true);
    expect(await s.run(() => s.advanceDue('t', { kind: 'warning', at: 2400 }, { kind: 'breach', at: 3000 }))).to.equal(false);
    expect(s.nextDeadline()).to.equal(3000);
    await s.run(() => s.cancelDeadlines('t'));
    expect(s.nextDeadline()).to.equal(null);
    expect(await s.run(() => s.advanceDue('t', { kind: 'breach', at: 3000 }, null))).to.equal(false);
  });

  it('numbers each day from 1, without gaps when a unit rolls back', async () => {
    store = new Journal(dir, { sync });
    const s = store;
    const ok = () => s.run(() => s.nextNumber('20261201'));
    const failing = s.run(() => {
      s.nextNumber('20261201');
      throw new Error('refused');
    });
    const [a, b, c] = await Promise.allSettled([ok(), failing, ok()]);
    expect(a).to.deep.equal({ status: 'fulfilled', value: 1 });
    expect(b.status).to.equal('rejected');
    expect(c).to.deep.equal({ status: 'fulfilled', value: 2 });
    expect(await ok()).to.equal(3);
  });

  it('serves the relay from memory while it keeps up, from the file after a reset or an overflow, in order and complete', async () => {
    store = new Journal(dir, { sync });
    const s = store;
    const add = (ids: string[]) => s.run(() => ids.forEach((id) => s.addOutbox(msg(id), 0)));
    await add(['m1', 'm2']);
    // First read comes from the file (nothing known yet about what is in it), then memory takes over.
    let got = s.readOutbox(0, 500);
    expect(got.map((r) => r.messageId)).to.deep.equal(['m1', 'm2']);
    await add(['m3']);
    const cursor = got.at(-1)!.seq;
    got = s.readOutbox(cursor, 500);
    expect(got.map((r) => r.messageId)).to.deep.equal(['m3']);
    expect(got[0]!.body).to.equal('{"id":"m3"}');
    expect(s.hasOutboxAfter(got[0]!.seq)).to.equal(false);

    // A rolled-back unit leaves nothing behind in memory either.
    const failed = s.run(() => {
      s.addOutbox(msg('never'), 0);
      throw new Error('refused');
    });
    await Promise.allSettled([failed, add(['m4'])]);
    got = s.readOutbox(got[0]!.seq, 500);
    expect(got.map((r) => r.messageId)).to.deep.equal(['m4']);

    // Reconnect: the relay starts again from 0 and sees everything still in the journal.
    s.resetRelay();
    await add(['m5']);
    const all: string[] = [];
    let at = 0;
    for (let rows = s.readOutbox(at, 2); rows.length > 0; rows = s.readOutbox(at, 2)) {
      all.push(...rows.map((r) => r.messageId));
      at = rows.at(-1)!.seq;
    }
    expect(all).to.deep.equal(['m1', 'm2', 'm3', 'm4', 'm5']);

    // Confirmed rows leave the file; an outbox row that points at its ticket is read with the ticket's body.
    await s.run(() => s.deleteOutbox([1, 2, 3, 4, 5]));
    s.resetRelay();
    await s.run(() => {
      s.insertTicket({ id: 'tk', number: '20261130-000009', channel: 'app', citizen_key: 'c', created_at: 0, respond_by: 1, acknowledged_at: null, matter: '', repeat_of: null, body: '{"ticket":true}' }, Buffer.alloc(0), { kind: 'warning', at: 0 });
      s.addOutbox({ ...msg('tk'), json: '{"ticket":true}', ticketRef: 'tk' }, 0);
    });
    expect(s.db.prepare(`SELECT body, ticket_ref FROM outbox`).get()).to.deep.equal({ body: '', ticket_ref: 'tk' });
    expect(s.readOutbox(0, 10).map((r) => r.body)).to.deep.equal(['{"ticket":true}']);
    expect(s.outboxDepth()).to.equal(1);
  });

  it('overflowing the in-memory mirror loses nothing: the relay reads the file until it catches up', async () => {
    store = new Journal(dir, { sync });
    const s = store;
    expect(s.readOutbox(0, 10)).to.deep.equal([]); // mirror on from here
    const ids = Array.from({ length: 6_000 }, (_, i) => `o${i}`);
    await s.run(() => ids.forEach((id) => s.addOutbox(msg(id), 0)));
    await s.run(() => s.addOutbox(msg('late'), 0));
    const seen: string[] = [];
    let at = 0;
    for (let rows = s.readOutbox(at, 500); rows.length > 0; rows = s.readOutbox(at, 500)) {
      seen.push(...rows.map((r) => r.messageId));
      at = rows.at(-1)!.seq;
    }
    expect(seen).to.deep.equal([...ids, 'late']);
    await s.run(() => s.addOutbox(msg('after'), 0));
    expect(s.readOutbox(at, 500).map((r) => r.messageId)).to.deep.equal(['after']);
  });

  it('hands the relay only rows whose unit has resolved, i.e. that are on disk', async () => {
    store = new Journal(dir, { sync });
    const s = store;
    expect(s.readOutbox(0, 10)).to.deep.equal([]);
    const resolved = new Set<string>();
    const served: string[] = [];
    let cursor = 0;
    let done = false;
    const poll = () => {
      for (const r of s.readOutbox(cursor, 500)) {
        expect(resolved.has(r.messageId), `${r.messageId} served before its commit was durable`).to.equal(true);
        served.push(r.messageId);
        cursor = r.seq;
      }
      if (!done) setImmediate(poll);
    };
    poll();
    const units = Array.from({ length: 300 }, (_, i) =>
      s.run(() => s.addOutbox(msg(`d${i}`), 0)).then(() => {
        resolved.add(`d${i}`);
      }),
    );
    await Promise.all(units);
    await s.whenDurable();
    await new Promise((r) => setTimeout(r, 20));
    done = true;
    expect(served).to.deep.equal(Array.from({ length: 300 }, (_, i) => `d${i}`));
  });

  it('whenDurable resolves after everything committed before it is synced', async () => {
    store = new Journal(dir, { sync });
    const s = store;
    let committed = false;
    const unit = s.run(() => s.addOutbox(msg('w'), 0)).then(() => (committed = true));
    await new Promise((r) => setImmediate(r)); // the batch commits in this turn
    await s.whenDurable();
    expect(committed).to.equal(true);
    await unit;
    await s.whenDurable(); // nothing pending: resolves at once
  });

  it('runSoon joins the next batch someone else starts, runs alone after its linger, and is not lost on close', async () => {
    store = new Journal(dir, { sync });
    const s = store;
    // Joins: with a 60 s linger it can only resolve this quickly inside run()'s batch.
    const t0 = performance.now();
    let soonTx = false;
    let soonFirst = false;
    const db = (s as unknown as { db: Database.Database }).db;
    const soon = s.runSoon(() => {
      soonTx = db.inTransaction;
      s.addOutbox(msg('soon'), 0);
    }, 60_000);
    const now = s.run(() => {
      soonFirst = db.inTransaction && db.prepare(`SELECT 1 FROM outbox WHERE message_id = 'soon'`).get() !== undefined;
      s.addOutbox(msg('now'), 0);
    });
    await Promise.all([soon, now]);
    expect(performance.now() - t0).to.be.below(10_000);
    expect(soonTx, 'ran inside a transaction').to.equal(true);
    expect(soonFirst, 'queued order kept: the earlier unit ran first, in the same transaction').to.equal(true);

    // Alone: waits its linger, then commits by itself.
    const t1 = performance.now();
    await s.runSoon(() => s.addOutbox(msg('alone'), 0), 30);
    expect(performance.now() - t1).to.be.at.least(25);

    // Pending at close: written before the file closes.
    void s.runSoon(() => s.addOutbox(msg('at-close'), 0), 60_000);
    await s.close();
    store = null;
    const file = new Database(join(dir, 'gateway.sqlite'), { readonly: true });
    try {
      expect(file.prepare(`SELECT 1 FROM outbox WHERE message_id = 'at-close'`).get()).to.not.equal(undefined);
    } finally {
      file.close();
    }
  });

  it('whenDurable resolves with the fsync it waits for, while commits keep coming', async () => {
    store = new Journal(dir, { sync });
    const s = store;
    let durable = false;
    let commits = 0;
    void s.run(() => s.addOutbox(msg('first'), 0));
    await new Promise((r) => setImmediate(r)); // committed; its fsync (with 'full') is under way
    const waiting = s.whenDurable().then(() => (durable = true));
    // A steady stream of commits: the waiter must not be pushed back behind each new one.
    while (!durable && commits < 2_000) {
      void s.run(() => s.addOutbox(msg(`c${commits}`), 0));
      commits++;
      await new Promise((r) => setImmediate(r));
    }
    await waiting;
    expect(commits).to.be.below(2_000);
  });

  it('checkpoints on its own thread while commits keep coming: the WAL starts over instead of growing', async () => {
    const reports: { ms: number; frames: number }[] = [];
    store = new Journal(dir, { sync, checkpointEveryMs: 50 });
    store.onCheckpoint = (r) => reports.push(r);
    const wal = join(dir, 'gateway.sqlite-wal');
    const value = 'x'.repeat(3000);
    // ≈ 24 MB of WAL in all, written in 800 commits over about a second and a half.
    for (let i = 0; i < 800; i++) {
      await store.run(() => {
        for (let k = 0; k < 8; k++) store!.kvSet('app', `k${(i * 8 + k) % 20_000}`, value + i);
      });
      if (i % 50 === 0) await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, 200));
    expect(reports.filter((r) => r.frames > 0).length, 'checkpoints that copied pages').to.be.greaterThan(3);
    // Without the thread the WAL would hold every commit (the backstop is ≈200 MB).
    expect(statSync(wal).size).to.be.lessThan(12 * 2 ** 20);
    expect(await store.run(() => store!.kvGet('app', 'k7'))).to.match(/^x+\d+$/);
  });

  it('with the thread off, the connection checkpoints itself', async () => {
    store = new Journal(dir, { sync, checkpointEveryMs: 0 });
    let reported = 0;
    store.onCheckpoint = () => reported++;
    for (let i = 0; i < 50; i++) await store.run(() => store!.kvSet('app', `k${i}`, 'v'));
    await new Promise((r) => setTimeout(r, 100));
    expect(reported).to.equal(0);
    expect(await store.run(() => store!.kvGet('app', 'k49'))).to.equal('v');
  });
});
