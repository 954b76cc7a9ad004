import { expect } from 'chai';
import { rmSync } from 'node:fs';
import { pino } from 'pino';
import { systemClock } from '../../src/clock.js';
import { DeadlineScheduler } from '../../src/deadlines/scheduler.js';
import { createMetrics } from '../../src/metrics.js';
import { SqliteStore } from '../../src/store/sqlite/index.js';
import type { DueDeadline, FiredDeadline, Store, TicketRecord } from '../../src/store/types.js';
import { tempDir } from '../support/gateway.js';
import { acceptUnit, sleep, standardDecide } from '../store/conformance.js';

/**
 * Deadlines that fall due a few milliseconds apart (tickets arriving spread out)
 * fire together, a handful of store units for many events, each still well within
 * the contract's 1 s of due. On a real SQLite store; the scheduler's store is the
 * real one, with its fireDue calls counted on the way through.
 */
describe('deadline scheduler: events due close together', function () {
  this.timeout(30_000);
  let dir: string;
  let store: SqliteStore;
  let scheduler: DeadlineScheduler | null = null;

  beforeEach(() => {
    dir = tempDir('gather-');
    store = new SqliteStore(dir, { sync: 'normal' }, systemClock);
  });
  afterEach(async () => {
    scheduler?.stop();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('fire in a few units, each event once and within 1 s of due', async () => {
    const N = 40;
    const dueAt = new Map<string, number>();
    for (let i = 0; i < N; i++) {
      // 5 ms apart, from 400 ms on: spread like tickets arriving at 200/s.
      const r = await store.accept(acceptUnit({ key: `g${i}`, warnAfter: 400 + 5 * i, respondAfter: 600_000 }));
      dueAt.set(r.record.id, r.record.createdAt + 400 + 5 * i);
    }
    const units: number[] = [];
    const fired: { id: string; at: number }[] = [];
    const counting: Store = Object.create(store, {
      fireDue: {
        value: async (now: number, limit: number, decide: (due: DueDeadline, t: TicketRecord) => FiredDeadline | null) => {
          const out = await store.fireDue(now, limit, decide);
          if (out.length > 0) units.push(out.length);
          for (const x of out) fired.push({ id: x.due.ticketId, at: Date.now() });
          return out;
        },
      },
    });
    scheduler = new DeadlineScheduler(counting, (due, t, now) => standardDecide(now)(due, t), systemClock, pino({ level: 'silent' }), createMetrics());
    scheduler.start();
    const until = Date.now() + 10_000;
    while (fired.length < N && Date.now() < until) await sleep(20);
    await sleep(300);

    expect(fired.length).to.equal(N);
    expect(new Set(fired.map((f) => f.id)).size).to.equal(N);
    for (const f of fired) expect(f.at - dueAt.get(f.id)!).to.be.within(0, 1000);
    // About 200 ms of due times at one look per 100 ms; one unit per event before.
    expect(units.length).to.be.at.most(8);
  });
});
