import { expect } from 'chai';
import { Collector } from '../support/rabbit.js';
import { createTestDatabase, query, type TestDatabase } from '../support/postgres.js';
import { RabbitCluster } from '../support/rabbit-cluster.js';
import { waitUntil, type GatewayProcess } from '../support/gateway.js';
import { clusterEnv, Instances, load, readyz, sleep, waitAll } from './helpers.js';

/**
 * Contract §6 "Broker": AMQP_URL lists the nodes of a RabbitMQ cluster; an
 * instance uses the first that answers and moves to the next when its node
 * goes away, losing nothing. The cluster is three private nodes.
 */
describe('cluster: AMQP_URL lists three RabbitMQ nodes and one of them stops', function () {
  this.timeout(180_000);
  let rabbit: RabbitCluster | undefined;
  let db: TestDatabase;
  let gw: GatewayProcess;
  /** The node the gateway is on after the first test. */
  let current = -1;
  const instances = new Instances(() => clusterEnv(db.url, rabbit!.urls.join(',')));

  /** The index of the node the gateway's connection is on, from the cluster's own list of connections. */
  const gatewayNode = async (alive: number): Promise<number[]> => {
    // `port` is the node's AMQP port; the gateway names its connection in client_properties.
    const out = await rabbit!.ctl(['-n', rabbit!.nodes[alive]!.name, 'list_connections', 'port', 'client_properties', '--formatter', 'json']);
    const conns = JSON.parse(out) as { port: number; client_properties: unknown }[];
    return conns.filter((c) => JSON.stringify(c.client_properties).includes('intake-gateway')).map((c) => rabbit!.nodes.findIndex((n) => n.port === Number(c.port)));
  };

  /** For a failure message: what the outbox still holds, what the queue holds, and what the subscription went through. */
  const whereTheyAre = async (alive: number, events: string[]): Promise<string> => {
    const outbox = await query(db.url, `SELECT owner, count(*)::int AS n, min(lease_until) AS lease FROM outbox GROUP BY owner`).catch((e: Error) => e.message);
    const queues = await rabbit!
      .ctl(['-n', rabbit!.nodes[alive]!.name, 'list_queues', 'name', 'type', 'leader', 'members', 'online', 'messages', 'messages_unacknowledged', 'consumers', '--formatter', 'json'])
      .catch((e: Error) => e.message);
    const sessions = await query(
      db.url,
      `SELECT pid, state, wait_event_type, wait_event, xact_start, query_start, left(query, 120) AS query FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`,
    ).catch((e: Error) => e.message);
    return `outbox: ${JSON.stringify(outbox)}\ndatabase sessions: ${JSON.stringify(sessions)}\nqueues on node ${alive}: ${queues}\ncollector: ${events.join('; ') || 'no events'}`;
  };

  before(async function () {
    if (!RabbitCluster.available()) this.skip();
    const started = Date.now();
    [rabbit, db] = await Promise.all([RabbitCluster.start(3), createTestDatabase('rmqcluster')]);
    console.log(`      three-node cluster formed in ${Date.now() - started} ms`);
    gw = await instances.spawn();
  });
  after(async () => {
    await instances.stopAll();
    await rabbit?.destroy();
    await db?.drop();
  });
  afterEach(function () {
    if (this.currentTest?.state === 'failed') console.log(instances.logs(80));
  });

  /**
   * Load on the gateway while node `victim` goes away (SIGTERM: a clean
   * shutdown that closes connections; SIGKILL: a crash, so publishes the node
   * had not confirmed are lost with it and must be sent again).
   */
  const loseNode = async (victim: number, signal: NodeJS.Signals, consumeFrom: number) => {
    const collector = await Collector.open(rabbit!.urls[consumeFrom]!, 'tickets.created');
    try {
      const l = load(() => [gw.baseUrl], `rmq-${signal}`, 4);
      await sleep(1500);
      // /readyz, polled throughout, says when the link went down and came back; rabbitmqctl (seconds per call) then says where.
      const seen: { at: number; broker: string }[] = [];
      let polling = true;
      const poller = (async () => {
        while (polling) {
          const broker = String((await readyz(gw.baseUrl)).body?.broker);
          if (seen.at(-1)?.broker !== broker) seen.push({ at: Date.now(), broker });
          await sleep(25);
        }
      })();
      const t0 = Date.now();
      await rabbit!.stopNode(victim, signal);
      const goneAt = Date.now();
      let now = victim;
      try {
        await waitUntil(
          async () => {
            if (seen.at(-1)?.broker !== 'up') return false;
            [now = victim] = await gatewayNode(consumeFrom);
            return now !== victim;
          },
          30_000,
          'the gateway to reconnect to another node',
        );
      } finally {
        polling = false;
        await poller;
      }
      const down = seen.find((x) => x.broker === 'down');
      const up = down && seen.find((x) => x.at > down.at && x.broker === 'up');
      console.log(
        `      ${signal}: node ${victim} took ${goneAt - t0} ms to stop; the gateway moved to node ${now}, ` +
          (down && up ? `its link down for ${up.at - down.at} ms (from ${down.at - t0} ms into the stop)` : 'its link never seen down (polled every 25 ms)'),
      );
      expect(now).to.not.equal(victim);
      await sleep(1500);
      const rec = await l.stop();
      expect(rec.acked.size).to.be.greaterThan(20);
      const refused = rec.answers.filter((x) => !x.id).length;
      const took = await waitAll(() => collector.messages, rec.acked, 60_000).catch(async (err: Error) => {
        throw new Error(`${err.message}\n${await whereTheyAre(consumeFrom, collector.events)}`);
      });
      console.log(`      ${rec.acked.size} acknowledged, ${refused} not acknowledged during the switch; all on tickets.created ${took} ms after the load stopped`);
      expect((await readyz(gw.baseUrl)).body.broker).to.equal('up');
      return now!;
    } finally {
      await collector.close();
    }
  };

  it('connects to the first node, moves to another when it stops, and loses nothing acknowledged', async () => {
    await waitUntil(async () => (await gatewayNode(1)).length === 1, 20_000, 'the gateway to connect');
    const [first] = await gatewayNode(1);
    expect(first, 'the first URL that answers').to.equal(0);
    // Consume from a node that stays up; quorum queues have a replica on every node.
    current = await loseNode(0, 'SIGTERM', 2);
  });

  it('after the stopped node is back, a crash of the node it is on moves it again, losing nothing', async function () {
    if (current < 0) this.skip();
    // Two of three replicas must be up for quorum queues to take messages.
    await rabbit!.startNode(0);
    const stays = [0, 1, 2].find((n) => n !== current && n !== 0)!;
    await loseNode(current, 'SIGKILL', stays);
  });
});
