import { expect } from 'chai';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import type { Received } from '../support/rabbit.js';

/**
 * GB/T 33358-2016 deadlines with DEADLINE_MESSAGE shortened to 2 s (warning at
 * 0.8 → 1.6 s). Times are read from the events' own `at` against `respondBy`,
 * so the check is "fired on time" and not "the test machine was fast".
 */
describe('deadlines: warning and breach on time, once, across restarts', function () {
  this.timeout(60_000);
  let tg: TestGateway;

  before(async () => {
    tg = await startTestGateway({ DEADLINE_MESSAGE: '2s' });
  });
  after(async () => {
    await tg?.stop();
  });

  const of = (id: string, kind: string) => (m: Received) => m.routingKey === `ticket.deadline.${kind}.app` && m.body.ticketId === id;
  const create = async (cid: string) => {
    const r = await tg.post('/api/v1/tickets', { clientMessageId: cid, content: `路面塌陷 ${cid}` });
    expect(r.status).to.equal(202);
    return (await r.json()) as { id: string; number: string; respondBy: string };
  };

  it('fires the warning at 80 % and the breach at respondBy, each within 1 s and exactly once', async () => {
    const t = await create('dl-1');
    const [w] = await tg.events.waitFor(of(t.id, 'warning'), 1, 10_000);
    const [b] = await tg.events.waitFor(of(t.id, 'breached'), 1, 10_000);
    const respondBy = Date.parse(t.respondBy);
    const receivedAt = respondBy - 2000;
    const warnDue = receivedAt + 1600;
    expect(Date.parse(w!.body.at) - warnDue).to.be.within(0, 1000);
    expect(Date.parse(b!.body.at) - respondBy).to.be.within(0, 1000);
    expect(b!.body).to.include({ ticketId: t.id, number: t.number, respondBy: t.respondBy });
    expect(b!.properties.type).to.equal('ticket.deadline');
    await new Promise((r) => setTimeout(r, 1500));
    expect(tg.events.messages.filter(of(t.id, 'warning'))).to.have.length(1);
    expect(tg.events.messages.filter(of(t.id, 'breached'))).to.have.length(1);
    const st = (await (await tg.get(`/api/v1/tickets/${t.id}/status`)).json()) as { breached: boolean };
    expect(st.breached).to.equal(true);
  });

  it('a reply before the deadline gives ticket.responded withinDeadline and cancels warning and breach', async () => {
    const t = await create('dl-2');
    const r = await tg.post(`/api/v1/tickets/${t.id}/replies`, { replyId: 'dl-2-r', text: '已受理，正在处理' });
    expect(r.status).to.equal(202);
    const [ev] = await tg.events.waitFor((m) => m.routingKey === 'ticket.responded.app' && m.body.ticketId === t.id);
    expect(ev!.body.withinDeadline).to.equal(true);
    await new Promise((res) => setTimeout(res, Math.max(0, Date.parse(t.respondBy) - Date.now()) + 1500));
    expect(tg.events.messages.filter(of(t.id, 'breached'))).to.have.length(0);
    expect(tg.events.messages.filter(of(t.id, 'warning'))).to.have.length(0);
  });

  it('a reply after the breach is withinDeadline: false', async () => {
    const t = await create('dl-3');
    await tg.events.waitFor(of(t.id, 'breached'), 1, 10_000);
    await tg.post(`/api/v1/tickets/${t.id}/replies`, { replyId: 'dl-3-r', text: '抱歉回复晚了' });
    const [ev] = await tg.events.waitFor((m) => m.routingKey === 'ticket.responded.app' && m.body.ticketId === t.id);
    expect(ev!.body.withinDeadline).to.equal(false);
  });

  it('a breach that fell due while the gateway was stopped fires at start, once, and its stale warning is skipped', async () => {
    const t = await create('dl-4');
    await tg.gateway.stop();
    await new Promise((r) => setTimeout(r, Math.max(0, Date.parse(t.respondBy) - Date.now()) + 500));
    const restartedAt = Date.now();
    await tg.restart();
    const [b] = await tg.events.waitFor(of(t.id, 'breached'), 1, 10_000);
    expect(Date.parse(b!.body.at) - restartedAt).to.be.lessThan(1000);
    await new Promise((r) => setTimeout(r, 1000));
    expect(tg.events.messages.filter(of(t.id, 'breached'))).to.have.length(1);
    expect(tg.events.messages.filter(of(t.id, 'warning'))).to.have.length(0);
  });

  it('a warning due across a restart fires after it, and the breach follows on time', async () => {
    const t = await create('dl-5');
    await tg.gateway.stop();
    // Down over the warning (1.6 s) but not the breach (2 s).
    await new Promise((r) => setTimeout(r, Math.max(0, Date.parse(t.respondBy) - 2000 + 1650 - Date.now())));
    await tg.restart();
    await tg.events.waitFor(of(t.id, 'warning'), 1, 10_000);
    const [b] = await tg.events.waitFor(of(t.id, 'breached'), 1, 10_000);
    expect(Date.parse(b!.body.at) - Date.parse(t.respondBy)).to.be.within(0, 1000);
  });
});
