import { rmSync } from 'node:fs';
import { SqliteStore } from '../../src/store/sqlite/index.js';
import { tempDir } from '../support/gateway.js';
import { storeConformance } from './conformance.js';

/**
 * The same store conformance suite the PostgreSQL backend passes, against the
 * embedded SQLite store: a fresh data directory per test, reopened in place for
 * the tests that check what survives a restart.
 */
for (const sync of ['full', 'normal'] as const) {
  describe(`SQLite store (sync ${sync})`, function () {
    this.timeout(60_000);
    storeConformance(`sqlite-${sync}`, async (clock) => {
      const dir = tempDir('store-conf-');
      const open: SqliteStore[] = [];
      const start = () => {
        const s = new SqliteStore(dir, { sync }, clock);
        open.push(s);
        return s;
      };
      const store = start();
      return {
        store,
        reopen: async () => {
          for (const s of open) await s.close();
          return start();
        },
        cleanup: async () => {
          for (const s of open) await s.close();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    });
  });
}
