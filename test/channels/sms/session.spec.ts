import { createServer, connect, type Server, type Socket } from 'node:net';
import { expect } from 'chai';
import { GatewayError } from '../../../src/errors.js';
import { loadConfig } from '../../../src/config.js';
import { createLogger } from '../../../src/log.js';
import { SmsAdapter } from '../../../src/channels/sms/adapter.js';
import type { AdapterContext, Inbound } from '../../../src/channels/types.js';
import { TestSmsc } from '../../support/smsc.js';
import { freePort, startTestGateway, waitUntil, type TestGateway } from '../../support/gateway.js';
import { Collector, createVhost, ensureRabbit, type Vhost } from '../../support/rabbit.js';
import { FAST, from, has, marker, nextPhone, startRig, type SmsRig } from './helpers.js';

const ZH = '您好，我家楼下的路灯已经坏了一个星期，晚上非常黑，老人孩子出行很不安全，请有关部门尽快派人维修，谢谢！';

describe('sms session (bind, keep-alive, reconnect, shutdown)', function () {
  this.timeout(60_000);
  let rig: SmsRig;
  before(async () => {
    rig = await startRig();
  });
  after(async () => {
    await rig?.stop();
  });

  it('binds as transceiver and keeps the link alive with enquire_link both ways', async () => {
    expect(rig.smsc.binds).to.be.at.least(1);
    await rig.smsc.waitUntil(() => rig.smsc.enquireLinks >= 1, 10_000, 'an enquire_link from the gateway');
    expect(await rig.smsc.enquireLink()).to.equal(0);
  });

  it('the SMSC dropping the connection mid long message: one complete ticket after the reconnect', async () => {
    const m = marker('drop');
    const sender = nextPhone();
    const segs = rig.smsc.segments(`${ZH}${m}`, { method: 'udh8', ref: 0x31, parts: 3, from: sender });
    expect(await rig.smsc.deliver(segs[0]!)).to.equal(0);
    const binds = rig.smsc.binds;
    rig.smsc.dropConnections();
    await rig.smsc.waitForBind(binds + 1);
    expect(await rig.smsc.deliver(segs[2]!)).to.equal(0);
    expect(await rig.smsc.deliver(segs[1]!)).to.equal(0);
    const [t] = await rig.gw.created.waitFor(has(m));
    expect(t!.body.content).to.equal(`${ZH}${m}`);
    expect(t!.body.incomplete).to.equal(false);
    expect(await rig.gw.created.settle(from(sender), 500)).to.have.length(1);
  });

  it('an unbind from the SMSC is answered, and the gateway binds again', async () => {
    const binds = rig.smsc.binds;
    await rig.smsc.unbindClient();
    await rig.smsc.waitForBind(binds + 1);
    const m = marker('rebind');
    expect(await rig.smsc.deliverText(`井盖丢失 ${m}`, { from: nextPhone() })).to.equal(0);
    await rig.gw.created.waitFor(has(m));
  });

  it('a refused bind is retried with backoff until the SMSC accepts', async () => {
    const binds = rig.smsc.binds;
    const attempts = rig.smsc.bindAttempts;
    rig.smsc.bindStatus = 0x0d; // ESME_RBINDFAIL
    rig.smsc.dropConnections();
    await rig.smsc.waitUntil(() => rig.smsc.bindAttempts >= attempts + 3, 15_000, 'three refused binds');
    expect(rig.smsc.binds).to.equal(binds);
    rig.smsc.bindStatus = 0;
    await rig.smsc.waitForBind(binds + 1, 15_000);
  });

  it('the gateway restarted between the parts of a long message: one complete ticket', async () => {
    const m = marker('restart');
    const sender = nextPhone();
    const segs = rig.smsc.segments(`${ZH}${m}`, { method: 'sar', ref: 0x5151, parts: 3, from: sender });
    expect(await rig.smsc.deliver(segs[1]!)).to.equal(0);
    const binds = rig.smsc.binds;
    const unbinds = rig.smsc.unbindsReceived;
    await rig.gw.restart();
    expect(rig.smsc.unbindsReceived, 'clean unbind on shutdown').to.equal(unbinds + 1);
    await rig.smsc.waitForBind(binds + 1);
    expect(await rig.smsc.deliver(segs[0]!)).to.equal(0);
    expect(await rig.smsc.deliver(segs[2]!)).to.equal(0);
    const [t] = await rig.gw.created.waitFor(has(m));
    expect(t!.body.content).to.equal(`${ZH}${m}`);
    expect(t!.body.incomplete).to.equal(false);
    expect(await rig.gw.created.settle(from(sender), 500)).to.have.length(1);
  });
});

describe('sms ack after durable', function () {
  this.timeout(60_000);
  let smsc: TestSmsc;
  let tg: TestGateway | undefined;
  let failures = 0;
  after(async () => {
    await tg?.stop();
    await smsc?.close();
  });

  it('answers SMS_RETRY_STATUS when the store cannot take the message, ESME_ROK once it can', async () => {
    await ensureRabbit();
    smsc = await TestSmsc.start();
    const config = loadConfig({}, { SMPP_URL: smsc.url, ...FAST, SMS_RETRY_STATUS: '0x14', DATA_DIR: '/nonexistent', AMQP_URL: 'amqp://127.0.0.1' });
    const adapter = new SmsAdapter(config, createLogger('silent'));
    // Fault injection at the intake boundary: the first two accepts fail as a full disk would.
    const start = adapter.start.bind(adapter);
    adapter.start = (ctx: AdapterContext) => {
      const intake = ctx.intake;
      const faulty = Object.create(intake) as typeof intake;
      faulty.accept = async (msg: Inbound, opts) => {
        if (failures < 2) {
          failures++;
          throw new GatewayError('STORE_UNAVAILABLE', 'disk full');
        }
        return intake.accept(msg, opts);
      };
      return start({ ...ctx, intake: faulty });
    };
    tg = await startTestGateway({ SMPP_URL: smsc.url, ...FAST, SMS_RETRY_STATUS: '0x14' }, { adapters: [adapter] });
    await smsc.waitForBind();
    const m = marker('retry');
    const sender = nextPhone();
    expect(await smsc.deliverText(`路面塌陷 ${m}`, { from: sender })).to.equal(0x14);
    expect(await smsc.deliverText(`路面塌陷 ${m}`, { from: sender })).to.equal(0x14);
    expect(tg.created.messages.filter(has(m))).to.have.length(0);
    expect(await smsc.deliverText(`路面塌陷 ${m}`, { from: sender })).to.equal(0);
    await tg.created.waitFor(has(m));
    expect(await tg.created.settle(from(sender), 500)).to.have.length(1);
  });
});

describe('sms backpressure', function () {
  this.timeout(90_000);
  let smsc: TestSmsc | undefined;
  let tg: TestGateway | undefined;
  let vhost: Vhost | undefined;
  let proxy: Server | undefined;
  const sockets = new Set<Socket>();
  let created: Collector | undefined;
  after(async () => {
    await tg?.stop();
    await smsc?.close();
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => (proxy ? proxy.close(() => r()) : r()));
    await created?.close();
    await vhost?.drop();
  });

  it('pauses reading while the outbox is above its high-water mark and resumes when it drains', async () => {
    vhost = await createVhost();
    // The broker sits behind a port where nothing listens yet: the outbox fills up.
    const port = await freePort();
    const url = new URL(vhost.url);
    url.port = String(port);
    smsc = await TestSmsc.start();
    tg = await startTestGateway(
      { SMPP_URL: smsc.url, ...FAST, OUTBOX_HIGH_WATER: 1 },
      { vhost: { ...vhost, url: url.toString(), drop: async () => {} }, noCollectors: true },
    );
    await smsc.waitForBind();
    const adapter = tg.gateway.adapters.find((a) => a.channel === 'sms')!;
    const ms = [marker('bp')];
    for (const m of ms) expect(await smsc.deliverText(`噪音 ${m}`, { from: nextPhone() })).to.equal(0);
    // ticket.created and, once the receipt went out, ticket.acknowledged: the backlog is above 1.
    await waitUntil(() => adapter.status!().paused === true, 5000, 'reading paused');
    const m4 = marker('bp4');
    let answered: number | null = null;
    const pending = smsc.deliverText(`噪音 ${m4}`, { from: nextPhone() }).then((s) => (answered = s));
    await new Promise((r) => setTimeout(r, 500));
    expect(answered, 'no deliver_sm_resp while paused').to.equal(null);

    // The broker comes back: the outbox drains, reading resumes, the waiting PDU is answered.
    proxy = createServer((client) => {
      const upstream = connect(5672, '127.0.0.1');
      sockets.add(client).add(upstream);
      client.pipe(upstream).pipe(client);
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
    });
    await new Promise<void>((r) => proxy!.listen(port, '127.0.0.1', () => r()));
    expect(await pending).to.equal(0);
    created = await Collector.open(vhost.url, 'tickets.created');
    for (const m of [...ms, m4]) await created.waitFor(has(m), 1, 20_000);
    expect(adapter.status!().paused).to.equal(false);
  });
});
