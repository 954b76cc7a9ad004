import { expect } from 'chai';
import { createVhost, ensureRabbit, RABBIT_PORT, type Vhost } from '../support/rabbit.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { startTestGateway, waitUntil, type StoreChoice, type TestGateway } from '../support/gateway.js';

/**
 * A link that is up (heartbeats flowing) but does not ack: its confirms stopped (the
 * broker took the messages and never said so), or it nacks every retry of the same
 * messages. The second was seen on a three-node RabbitMQ 3.10 cluster after the node
 * holding the quorum queues' leaders was killed: the gateway's new channel nacked
 * every publish, retried every 500 ms, for as long as the test waited, while the
 * queue took publishes from other connections. A frame-aware proxy in front of the
 * real broker drops basic.ack/basic.nack on the open link, or turns acks into nacks.
 */
for (const storeKind of ['sqlite', 'postgres'] as StoreChoice[]) {
  describe(`broker links that do not ack (real RabbitMQ, ${storeKind} store)`, function () {
    this.timeout(60_000);
    let vhost: Vhost;
    let proxy: TcpProxy;
    let tg: TestGateway;

    before(async () => {
      await ensureRabbit();
      vhost = await createVhost('confirms');
      proxy = await TcpProxy.start(RABBIT_PORT, '127.0.0.1', { amqpFrames: true });
      // The gateway goes through the proxy; the collectors read the vhost directly.
      tg = await startTestGateway({ AMQP_URL: proxy.via(vhost.url), PUBLISH_CONFIRM_TIMEOUT: '3s', AMQP_RECONNECT_MAX: '300ms' }, { vhost, storeKind });
    });
    after(async () => {
      await tg?.stop();
      await proxy?.close();
      await vhost?.drop();
    });

    const post = async (i: number): Promise<string> => {
      const r = await tg.post('/api/v1/tickets', { clientMessageId: `confirms-${storeKind}-${i}`, citizen: { id: `c-${i}` }, content: `路灯不亮了 ${i}` });
      expect(r.status).to.equal(202);
      return ((await r.json()) as { id: string }).id;
    };

    it('drops the link after PUBLISH_CONFIRM_TIMEOUT and publishes everything unconfirmed again on a new one', async () => {
      const first = await post(0);
      await tg.created.waitFor((m) => m.body.id === first);
      expect(proxy.connections).to.equal(1);

      proxy.withholdConfirms();
      const ids: string[] = [];
      for (let i = 1; i <= 20; i++) ids.push(await post(i));
      // The broker has them all; the gateway, told nothing, keeps them in the outbox.
      await tg.created.waitFor((m) => ids.includes(m.body.id), 20);
      // Two rows a ticket: tickets.created and its tickets.events twin.
      expect(tg.gateway.broker.inFlight, 'publishes awaiting a confirm').to.be.at.least(40);
      expect((await tg.gateway.store.outboxSummary()).depth, 'rows held while unconfirmed').to.be.at.least(40);

      // Past the timeout: a new link (through the proxy, confirms pass again), the rows published again and confirmed.
      await waitUntil(async () => proxy.connections === 2 && tg.gateway.broker.inFlight === 0 && (await tg.gateway.store.outboxSummary()).depth === 0, 20_000, 'the outbox to empty on a new link');
      expect(tg.gateway.broker.state).to.equal('up');
      const retries = await tg.gateway.metrics.publishRetries.get();
      const timedOut = retries.values.find((v) => v.labels.reason === 'confirm_timeout')?.value ?? 0;
      expect(timedOut).to.be.at.least(40);
      // At-least-once: each ticket is there, some twice under the same messageId, which consumers dedupe.
      const created = tg.created.messages.filter((m) => ids.includes(m.body.id));
      expect(new Set(created.map((m) => m.body.id)).size).to.equal(20);
      for (const m of created) expect(m.properties.messageId).to.be.a('string');

      // And the new link confirms normally.
      const after = await post(21);
      await tg.created.waitFor((m) => m.body.id === after);
      await waitUntil(async () => (await tg.gateway.store.outboxSummary()).depth === 0, 10_000, 'the new ticket confirmed');
    });

    it('a link that nacks every retry is dropped after PUBLISH_CONFIRM_TIMEOUT; a new one takes the messages', async () => {
      const links = proxy.connections;
      const before = await retriesBy('nack');
      proxy.nackConfirms();
      const ids: string[] = [];
      for (let i = 100; i < 110; i++) ids.push(await post(i));
      // Retried (every 500 ms) and nacked again, more than once each, on the same link.
      await waitUntil(async () => (await retriesBy('nack')) - before >= 40, 5000, 'the nacks to repeat');
      expect(proxy.connections).to.equal(links);
      await waitUntil(async () => proxy.connections === links + 1 && (await tg.gateway.store.outboxSummary()).depth === 0, 20_000, 'the outbox to empty on a new link');
      const created = tg.created.messages.filter((m) => ids.includes(m.body.id));
      expect(new Set(created.map((m) => m.body.id)).size).to.equal(10);
    });

    const retriesBy = async (reason: string): Promise<number> =>
      (await tg.gateway.metrics.publishRetries.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;
  });
}
