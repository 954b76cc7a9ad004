import { expect } from 'chai';
import { GatewayError } from '../../errors.js';
import { SubmitGate } from './window.js';

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

describe('sms/window SubmitGate', () => {
  it('admits at most `window` at once, the next one when a slot is released', async () => {
    const gate = new SubmitGate(2, 1000, () => true);
    let admitted = 0;
    for (let i = 0; i < 4; i++) void gate.acquire(5000).then(() => admitted++);
    await tick();
    expect(admitted).to.equal(2);
    expect(gate.queued).to.equal(2);
    gate.release();
    await tick();
    expect(admitted).to.equal(3);
    gate.close();
  });

  it('admits nothing while the link is down; fails with SEND_TRANSIENT after the wait', async () => {
    let open = false;
    const gate = new SubmitGate(2, 1000, () => open);
    const err = await gate.acquire(30).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(GatewayError);
    expect((err as GatewayError).code).to.equal('SEND_TRANSIENT');
    const p = gate.acquire(1000);
    open = true;
    gate.pump();
    await p;
    gate.close();
  });

  it('paces starts to `tps` per second and holds everything after a throttle', async () => {
    let now = 0;
    const gate = new SubmitGate(10, 2, () => true, 100, () => now);
    let admitted = 0;
    for (let i = 0; i < 3; i++) void gate.acquire(60_000).then(() => admitted++);
    await tick();
    expect(admitted).to.equal(2);
    now = 1000;
    await tick(1050);
    expect(admitted).to.equal(3);
    gate.throttle(500);
    void gate.acquire(60_000).then(() => admitted++);
    await tick();
    expect(admitted).to.equal(3);
    now = 1600;
    await tick(550);
    expect(admitted).to.equal(4);
    gate.close();
  });

  it('bounds its queue and fails waiters on close', async () => {
    const gate = new SubmitGate(1, 1000, () => false, 2);
    const a = gate.acquire(60_000).catch((e: GatewayError) => e.code);
    const b = gate.acquire(60_000).catch((e: GatewayError) => e.code);
    expect(await gate.acquire(60_000).catch((e: GatewayError) => e.code)).to.equal('SEND_TRANSIENT');
    gate.close();
    expect(await a).to.equal('SEND_TRANSIENT');
    expect(await b).to.equal('SEND_TRANSIENT');
  });
});
