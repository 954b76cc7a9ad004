import { rmSync } from 'node:fs';
import { expect } from 'chai';
import { TestSmsc } from '../../support/smsc.js';
import { spawnGateway, tempDir, type GatewayProcess } from '../../support/gateway.js';
import { Collector, createVhost, type Vhost } from '../../support/rabbit.js';
import { has, marker, nextPhone } from './helpers.js';

const ZH = '您好，我家楼下的路灯已经坏了一个星期，晚上非常黑，老人孩子出行很不安全，请有关部门尽快派人维修，谢谢！';

/** The gateway as its own process (as `npm start` runs it): SIGKILL between segments, SIGTERM with unbind. */
describe('sms gateway process', function () {
  this.timeout(90_000);
  let vhost: Vhost;
  let smsc: TestSmsc;
  let dataDir: string;
  let created: Collector | undefined;
  const procs: GatewayProcess[] = [];
  const env = () => ({
    AMQP_URL: vhost.url,
    DATA_DIR: dataDir,
    SMPP_URL: smsc.url,
    SMS_RECONNECT_MIN: '100ms',
    SMS_RECONNECT_MAX: '500ms',
    LOG_LEVEL: 'warn',
  });
  const spawn = async () => {
    const p = await spawnGateway(env());
    procs.push(p);
    return p;
  };

  before(async () => {
    vhost = await createVhost();
    smsc = await TestSmsc.start();
    dataDir = tempDir('sms-proc-');
  });
  after(async () => {
    for (const p of procs) {
      p.kill('SIGKILL');
      await p.exited;
    }
    await created?.close();
    await smsc?.close();
    await vhost?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('SIGKILL between the segments of a long message loses nothing that was acknowledged', async () => {
    const first = await spawn();
    await smsc.waitForBind(1, 20_000);
    created = await Collector.open(vhost.url, 'tickets.created');
    const m = marker('kill');
    const sender = nextPhone();
    const segs = smsc.segments(`${ZH}${m}`, { method: 'udh16', ref: 0x0909, parts: 3, from: sender });
    expect(await smsc.deliver(segs[2]!)).to.equal(0);
    expect(await smsc.deliver(segs[0]!)).to.equal(0);
    first.kill('SIGKILL');
    await first.exited;
    const binds = smsc.binds;
    await spawn();
    await smsc.waitForBind(binds + 1, 20_000);
    expect(await smsc.deliver(segs[1]!)).to.equal(0);
    const [t] = await created.waitFor(has(m), 1, 20_000);
    expect(t!.body.content).to.equal(`${ZH}${m}`);
    expect(t!.body.incomplete).to.equal(false);
  });

  it('SIGTERM: unbind, then exit 0 within 10 s', async () => {
    const current = procs.at(-1)!;
    const unbinds = smsc.unbindsReceived;
    const t0 = Date.now();
    current.kill('SIGTERM');
    const code = await current.exited;
    expect(code).to.equal(0);
    expect(Date.now() - t0).to.be.lessThan(10_000);
    expect(smsc.unbindsReceived).to.equal(unbinds + 1);
  });
});
