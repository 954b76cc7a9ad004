import { expect } from 'chai';
import { Collector, createVhost, type Received, type Vhost } from '../support/rabbit.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { dovecotAvailable, startDovecot, type Dovecot } from '../support/dovecot.js';
import { waitUntil, type GatewayProcess } from '../support/gateway.js';
import { buildMail, uniqueId } from '../fixtures/mail/build.js';
import { clusterEnv, Instances, readyz, sleep, waitAll } from './helpers.js';

/** Whether /readyz lists the IMAP lease among those this instance holds (contract §6). */
async function readsImap(p: GatewayProcess): Promise<boolean> {
  const leases = (await readyz(p.baseUrl)).body?.leases as string[] | undefined;
  expect(leases, '/readyz leases').to.be.an('array');
  return leases!.includes('mailbox:imap');
}

/**
 * Contract §6: IMAP is read by one instance at a time (a lease in the
 * database); when it dies another takes over within 30 s, missing nothing and
 * reading nothing twice.
 */
describe('cluster: the IMAP lease moves to a live instance', function () {
  this.timeout(120_000);
  let db: TestDatabase;
  let vhost: Vhost;
  let dovecot: Dovecot | undefined;
  let created: Collector | undefined;
  const instances = new Instances(() => ({
    ...clusterEnv(db.url, vhost.url),
    IMAP_URL: dovecot!.url,
    IMAP_POLL_INTERVAL: '2s',
    IMAP_RECONNECT_MAX: '1s',
  }));
  const mail = (tag: string) => {
    const messageId = uniqueId(tag);
    return { messageId, raw: buildMail({ from: { address: `${tag}@citizen.example.cn` }, subject: `小区路灯不亮 ${tag}`, charset: 'utf-8', messageId, text: `幸福路8号的路灯坏了一周了 ${tag}` }) };
  };
  const byMessageId = (m: Received) => m.body.source?.messageId as string;

  before(async function () {
    if (!dovecotAvailable()) this.skip();
    db = await createTestDatabase('imap');
    vhost = await createVhost('cluster-imap');
    dovecot = await startDovecot();
    await Promise.all([instances.spawn(), instances.spawn()]);
    created = await Collector.open(vhost.url, 'tickets.created');
  });
  after(async () => {
    await instances.stopAll();
    await created?.close();
    await dovecot?.stop();
    await vhost?.drop();
    await db?.drop();
  });
  afterEach(function () {
    if (this.currentTest?.state === 'failed') console.log(instances.logs());
  });

  it('one instance reads; when it is killed the other reads new mail within 30 s; no mail becomes two tickets', async () => {
    const [p, q] = instances.procs as [GatewayProcess, GatewayProcess];
    const first = mail('lease-first');
    await dovecot!.append(first.raw);
    await waitAll(() => created!.messages, [first.messageId], 30_000, byMessageId);

    let reader: GatewayProcess | undefined;
    await waitUntil(async () => {
      const [rp, rq] = await Promise.all([readsImap(p), readsImap(q)]);
      expect(rp && rq, 'both instances claim the IMAP lease').to.equal(false);
      reader = rp ? p : rq ? q : undefined;
      return reader !== undefined;
    }, 10_000, 'an instance to report the IMAP lease in /readyz');
    const other = reader === p ? q : p;

    // A mail that lands just as the reader dies: read (maybe half processed) by it, or left for the other, but once.
    const racing = mail('lease-racing');
    await dovecot!.append(racing.raw);
    await sleep(150);
    reader!.kill('SIGKILL');
    await reader!.exited;
    const after = [mail('lease-after-1'), mail('lease-after-2')];
    const appendedAt = Date.now();
    for (const m of after) await dovecot!.append(m.raw);

    const took = await waitAll(() => created!.messages, [racing.messageId, ...after.map((m) => m.messageId)], 45_000, byMessageId);
    console.log(`      mail appended after the reader was killed became tickets ${took} ms later (from the other instance)`);
    expect(Date.now() - appendedAt, 'contract: takeover within 30 s').to.be.at.most(30_000);
    expect(await readsImap(other)).to.equal(true);

    // Every mail exactly once, also after another poll round.
    await sleep(3000);
    const ids = [first, racing, ...after].map((m) => m.messageId);
    // A ticket published twice after a crash is allowed (at-least-once); two ticket ids for one mail are not.
    const ticketsOf = new Map<string, Set<string>>();
    for (const m of created!.messages.filter((x) => ids.includes(byMessageId(x)))) {
      ticketsOf.set(byMessageId(m), (ticketsOf.get(byMessageId(m)) ?? new Set()).add(m.body.id));
    }
    expect([...ticketsOf].filter(([, t]) => t.size !== 1).map(([k, t]) => [k, [...t]]), 'mail that became two tickets').to.deep.equal([]);
    expect(ticketsOf.size).to.equal(ids.length);
  });
});
