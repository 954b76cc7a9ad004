import { expect } from 'chai';
import { Collector, createVhost, type Vhost } from '../support/rabbit.js';
import { createTestDatabase, PrivatePostgres, type TestDatabase } from '../support/postgres.js';
import { waitUntil, type GatewayProcess } from '../support/gateway.js';
import { clusterEnv, Instances, load, postTicket, readyz, sleep, waitAll } from './helpers.js';

/**
 * Contract §6: while PostgreSQL is unreachable an instance acknowledges
 * nothing (HTTP 503) and /readyz is 503; it recovers by itself when the
 * database returns, and everything acknowledged before and after is published.
 * The database here is a private cluster that the test stops and starts.
 */
describe('cluster: PostgreSQL restarted under load', function () {
  this.timeout(120_000);
  let pgServer: PrivatePostgres | undefined;
  let db: TestDatabase;
  let vhost: Vhost;
  let gw: GatewayProcess;
  let created: Collector | undefined;
  const instances = new Instances(() => clusterEnv(db.url, vhost.url));

  before(async function () {
    if (!PrivatePostgres.available()) this.skip();
    pgServer = new PrivatePostgres();
    await pgServer.start();
    db = await createTestDatabase('outage', pgServer.url);
    vhost = await createVhost('cluster-pg');
    gw = await instances.spawn();
    created = await Collector.open(vhost.url, 'tickets.created');
  });
  after(async () => {
    await instances.stopAll();
    await created?.close();
    await vhost?.drop();
    await pgServer?.destroy();
  });
  afterEach(function () {
    if (this.currentTest?.state === 'failed') console.log(`${instances.logs(80)}\n--- postgres log ---\n${pgServer?.log().slice(-3000)}`);
  });

  // fast: a clean shutdown that disconnects clients; immediate: a crash, with recovery at the next start.
  for (const mode of ['fast', 'immediate'] as const) {
    it(`acknowledges nothing while the database is down (${mode} stop), recovers by itself, and publishes everything acknowledged`, async () => {
      const l = load(() => [gw.baseUrl], `pg-${mode}`, 4);
      await sleep(1500);
      await pgServer!.stop(mode);
      const downAt = Date.now();
      await waitUntil(async () => (await readyz(gw.baseUrl)).status === 503, 10_000, '/readyz 503 with the database down');
      const ready = await readyz(gw.baseUrl);
      expect(ready.body.storeKind).to.equal('postgres');
      console.log(`      /readyz 503 ${Date.now() - downAt} ms after PostgreSQL stopped: ${JSON.stringify(ready.body.reasons)}`);
      const during = await postTicket(gw.baseUrl, { clientMessageId: `pg-during-${mode}`, citizen: { id: 'u-during' }, content: '数据库停了也要说清楚' });
      expect(during.status, 'a post while the database is down').to.equal(503);
      await sleep(2000);
      const upFrom = Date.now();
      await pgServer!.start();
      const startedAt = Date.now();
      await waitUntil(async () => (await readyz(gw.baseUrl)).status === 200, 30_000, '/readyz 200 after PostgreSQL returned');
      console.log(`      ready again ${Date.now() - startedAt} ms after PostgreSQL was back`);
      await sleep(1500);
      const rec = await l.stop();

      const answeredDuringOutage = rec.answers.filter((x) => x.start > downAt + 1000 && x.end < upFrom);
      const statuses = [...new Set(answeredDuringOutage.map((x) => x.status))];
      console.log(`      ${rec.acked.size} acknowledged, ${answeredDuringOutage.length} posts answered during the outage (statuses ${statuses.join(',')})`);
      expect(answeredDuringOutage.filter((x) => x.status === 202 || x.status === 200), 'acknowledged while the database was down').to.deep.equal([]);
      expect(answeredDuringOutage.length).to.be.greaterThan(0);
      const before = rec.answers.filter((x) => x.end < downAt && x.id).length;
      const after = rec.answers.filter((x) => x.start > startedAt && x.id).length;
      expect(before, 'acknowledged before the outage').to.be.greaterThan(0);
      expect(after, 'acknowledged after the database returned').to.be.greaterThan(0);

      await waitAll(() => created!.messages, rec.acked, 30_000);
    });
  }
});
