import { expect } from 'chai';
import { rmSync } from 'node:fs';
import { SqliteStore } from '../../src/store/sqlite/index.js';
import { tempDir } from '../support/gateway.js';
import { T0, movableClock, outboxRow, sleep } from './conformance.js';

/**
 * A second process on a gateway's data directory (`intake-gateway replay`)
 * journals outbox rows that the gateway's relay must publish without a restart:
 * the gateway's in-memory mirror of the outbox tail does not have them and no
 * commit of its own announced them. Two stores on one directory stand in for the
 * two processes: they share nothing but the file, as two processes would.
 */
for (const sync of ['full', 'normal'] as const) {
  describe(`SQLite store: rows journaled by another process (sync ${sync})`, function () {
    this.timeout(20_000);
    let dir: string;
    let gateway: SqliteStore;
    let other: SqliteStore;
    beforeEach(() => {
      dir = tempDir('store-shared-');
      gateway = new SqliteStore(dir, { sync }, movableClock());
      other = new SqliteStore(dir, { sync }, movableClock(T0 + 5000));
    });
    afterEach(async () => {
      await other.close();
      await gateway.close();
      rmSync(dir, { recursive: true, force: true });
    });

    /** The relay as the gateway runs it: the mirror on (caught up with the file), confirming what it took. */
    async function relayCaughtUp(): Promise<void> {
      await gateway.append({ outbox: [outboxRow('own-0')] });
      const rows = await gateway.takeOutbox(100);
      expect(rows.map((r) => r.messageId)).to.deep.equal(['own-0']);
      await gateway.confirmOutbox(rows.map((r) => r.seq));
      await gateway.append({ outbox: [outboxRow('own-1')] });
      // Served from the mirror from here on.
      expect(gateway.readyCount()).to.equal(1);
      const more = await gateway.takeOutbox(100);
      await gateway.confirmOutbox(more.map((r) => r.seq));
    }

    it('an idle relay is woken for them within about a second and takes them in order', async () => {
      await relayCaughtUp();
      let woken = 0;
      gateway.onOutbox = () => woken++;
      await other.append({ outbox: [outboxRow('replay-1'), outboxRow('replay-2')] });
      for (let i = 0; i < 60 && woken === 0; i++) await sleep(50);
      expect(woken).to.be.greaterThan(0);
      expect(gateway.outboxDepth()).to.equal(2);
      expect((await gateway.takeOutbox(100)).map((r) => r.messageId)).to.deep.equal(['replay-1', 'replay-2']);
    });

    it('a busy relay sees them when its own next row leaves a gap in the sequence', async () => {
      await relayCaughtUp();
      await other.append({ outbox: [outboxRow('replay-1')] });
      // Before the once-a-second look: the gateway's own row shows that someone wrote in between.
      await gateway.append({ outbox: [outboxRow('own-2')] });
      const taken: string[] = [];
      for (let i = 0; i < 40 && taken.length < 2; i++) {
        taken.push(...(await gateway.takeOutbox(100)).map((r) => r.messageId));
        if (taken.length < 2) await sleep(50);
      }
      expect(taken).to.deep.equal(['replay-1', 'own-2']);
      expect(gateway.outboxDepth()).to.equal(2);
      const s = await gateway.outboxSummary();
      expect(s).to.include({ depth: 2, oldestRoutingKey: 'test.replay-1', taken: 0, lapsed: 0 });
    });
  });
}
