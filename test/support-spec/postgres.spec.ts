import { expect } from 'chai';
import pg from 'pg';
import { createTestDatabase, PrivatePostgres, query, type TestDatabase } from '../support/postgres.js';
import { portOpen } from '../support/rabbit.js';

describe('test support: PostgreSQL', function () {
  this.timeout(90_000);

  describe('createTestDatabase on the shared server', () => {
    let db: TestDatabase | undefined;
    after(async () => {
      await db?.drop();
    });

    it('makes an empty database of its own and drops it even with a session still open', async () => {
      db = await createTestDatabase('selftest');
      expect(db.name).to.match(/^gw_selftest_[0-9a-f]{8}$/);
      await query(db.url, 'CREATE TABLE t (x int)');
      expect(await query(db.url, 'SELECT count(*)::int AS n FROM t')).to.deep.equal([{ n: 0 }]);
      // A client that never disconnects, like a SIGKILLed gateway's pool as the server sees it.
      const lingering = new pg.Client({ connectionString: db.url });
      lingering.on('error', () => {});
      await lingering.connect();
      await db.drop();
      const left = await query('postgres://postgres@127.0.0.1:5432/postgres', 'SELECT 1 FROM pg_database WHERE datname = $1', [db.name]);
      expect(left).to.deep.equal([]);
      await lingering.end().catch(() => {});
    });
  });

  describe('PrivatePostgres', () => {
    let priv: PrivatePostgres | undefined;
    before(function () {
      if (!PrivatePostgres.available()) this.skip();
    });
    after(async () => {
      await priv?.destroy();
    });

    it('starts on its own port, stops fast and immediate, comes back with its data, and is removed', async () => {
      priv = new PrivatePostgres();
      await priv.start();
      expect(priv.port).to.not.equal(5432);
      const db = await createTestDatabase('private', priv.url);
      await query(db.url, 'CREATE TABLE t (x int); INSERT INTO t VALUES (1)');
      const pid = priv.pid;
      expect(pid).to.be.a('number');
      await priv.stop('fast');
      expect(await portOpen(priv.port)).to.equal(false);
      await priv.start();
      expect(await query(db.url, 'SELECT x FROM t')).to.deep.equal([{ x: 1 }]);
      await priv.stop('immediate');
      expect(await portOpen(priv.port)).to.equal(false);
      await priv.start();
      expect(await query(db.url, 'SELECT x FROM t')).to.deep.equal([{ x: 1 }]);
      // The shared server was never involved.
      expect(await portOpen(5432)).to.equal(true);
      await priv.destroy();
      expect(priv.pid).to.equal(null);
      priv = undefined;
    });
  });
});
