import { expect } from 'chai';
import amqp from 'amqplib';
import { RabbitCluster } from '../support/rabbit-cluster.js';

describe('test support: three-node RabbitMQ cluster', function () {
  this.timeout(180_000);
  let cluster: RabbitCluster | undefined;
  before(async function () {
    if (!RabbitCluster.available()) this.skip();
    cluster = await RabbitCluster.start(3);
  });
  after(async () => {
    await cluster?.destroy();
  });

  it('replicates a quorum queue: a message survives the node it was published on', async () => {
    const c = cluster!;
    expect(c.urls).to.have.length(3);
    const pub = await amqp.connect(c.urls[0]!);
    pub.on('error', () => {});
    const ch = await pub.createConfirmChannel();
    await ch.assertQueue('selftest', { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    ch.sendToQueue('selftest', Buffer.from('kept'), { persistent: true });
    await ch.waitForConfirms();
    const gone = new Promise((r) => pub.once('close', r));
    await c.stopNode(0);
    await gone;
    const sub = await amqp.connect(c.urls[1]!);
    sub.on('error', () => {});
    let ch2 = await sub.createChannel();
    let got: amqp.GetMessage | false = false;
    const until = Date.now() + 20_000;
    // The queue elects a new leader among the two remaining nodes first.
    ch2.on('error', () => {});
    while (!got && Date.now() < until) {
      try {
        got = await ch2.get('selftest', { noAck: true });
      } catch {
        // A failed get closes the channel.
        ch2 = await sub.createChannel();
      }
      if (!got) await new Promise((r) => setTimeout(r, 200));
    }
    expect(got && got.content.toString()).to.equal('kept');
    await sub.close();
    await c.startNode(0);
    const back = await amqp.connect(c.urls[0]!);
    await back.close();
  });
});
