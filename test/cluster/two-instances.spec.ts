import { expect } from 'chai';
import { Collector, createVhost, publishJson, type Received, type Vhost } from '../support/rabbit.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { TestSmsc } from '../support/smsc.js';
import { TEST_DOWNSTREAM_KEY, type GatewayProcess } from '../support/gateway.js';
import { clusterEnv, countBy, Instances, postTicket, readyz, sleep, waitAll, type Posted } from './helpers.js';

// Warning and breach 4 s apart: on a loaded machine a scheduler that runs late
// skips a warning whose breach is also due, which would read as "fired 0 times".
const DEADLINE_MS = 8000;
const WARNING_RATIO = 0.5;

/**
 * Two gateway processes on one PostgreSQL database and one vhost are one
 * gateway (contract §6): dedupe, numbers and deadlines are cluster-wide, and
 * the parts of one long SMS may arrive on different instances' binds.
 */
describe('cluster: two instances on one database', function () {
  this.timeout(120_000);
  let db: TestDatabase;
  let vhost: Vhost;
  let smscA: TestSmsc;
  let smscB: TestSmsc;
  let a: GatewayProcess;
  let b: GatewayProcess;
  let created: Collector | undefined;
  let events: Collector | undefined;
  const instances = new Instances(() => ({
    ...clusterEnv(db.url, vhost.url),
    DEADLINE_MESSAGE: `${DEADLINE_MS / 1000}s`,
    DEADLINE_WARNING_RATIO: String(WARNING_RATIO),
    SMS_RECONNECT_MIN: '100ms',
    SMS_RECONNECT_MAX: '500ms',
  }));
  /** Every ticket this file made: each must get exactly one warning and one breach. */
  const tickets = new Map<string, string>();
  const remember = (p: Posted) => p.id && p.respondBy && tickets.set(p.id, p.respondBy);

  before(async () => {
    db = await createTestDatabase('two');
    vhost = await createVhost('cluster-two');
    [smscA, smscB] = await Promise.all([TestSmsc.start(), TestSmsc.start()]);
    // Both at once: concurrent schema creation at start must be safe.
    [a, b] = await Promise.all([instances.spawn({ SMPP_URL: smscA.url }), instances.spawn({ SMPP_URL: smscB.url })]);
    [created, events] = await Promise.all([Collector.open(vhost.url, 'tickets.created'), Collector.open(vhost.url, 'tickets.events')]);
    await Promise.all([smscA.waitForBind(1, 20_000), smscB.waitForBind(1, 20_000)]);
  });
  after(async () => {
    await instances.stopAll();
    await created?.close();
    await events?.close();
    await smscA?.close();
    await smscB?.close();
    await vhost?.drop();
    await db?.drop();
  });
  afterEach(function () {
    if (this.currentTest?.state === 'failed') console.log(instances.logs());
  });

  it('both report the postgres store and are ready', async () => {
    for (const p of [a, b]) {
      const r = await readyz(p.baseUrl);
      expect(r.status, JSON.stringify(r.body)).to.equal(200);
      expect(r.body.storeKind).to.equal('postgres');
      // No IMAP or Telegram polling here: nothing to hold.
      expect(r.body.leases).to.deep.equal([]);
    }
  });

  it('the same clientMessageId posted to both instances is one ticket: 202 there, 200 with the same id here', async () => {
    const body = { clientMessageId: 'both-1', citizen: { id: 'u-both' }, content: '小区门口的下水道井盖丢失，很危险' };
    const first = await postTicket(a.baseUrl, body);
    const second = await postTicket(b.baseUrl, body);
    expect(first.status).to.equal(202);
    expect(second.status).to.equal(200);
    expect(second.id).to.equal(first.id);
    expect(second.number).to.equal(first.number);
    remember(first);
    // Both at once on the two instances: still one ticket.
    const racing = { clientMessageId: 'both-2', citizen: { id: 'u-both' }, content: '路口红绿灯坏了' };
    const [x, y] = await Promise.all([postTicket(a.baseUrl, racing), postTicket(b.baseUrl, racing)]);
    expect([x.status, y.status].sort()).to.deep.equal([200, 202]);
    expect(x.id).to.equal(y.id);
    remember(x);
    const ids = [first.id!, x.id!];
    await waitAll(() => created!.messages, ids, 15_000);
    const copies = await created!.settle((m) => ids.includes(m.body.id), 1000);
    expect(copies).to.have.length(2);
  });

  it('200 concurrent tickets spread over both instances get 200 distinct numbers', async () => {
    const posts = Array.from({ length: 200 }, (_, i) =>
      postTicket(i % 2 ? a.baseUrl : b.baseUrl, { clientMessageId: `many-${i}`, citizen: { id: `u-many-${i}` }, content: `噪音扰民 第${i}号` }, 30_000),
    );
    const res = await Promise.all(posts);
    expect(res.map((r) => r.status).filter((s) => s !== 202)).to.deep.equal([]);
    res.forEach(remember);
    const numbers = new Set(res.map((r) => r.number));
    expect(numbers.size).to.equal(200);
    for (const n of numbers) expect(n).to.match(/^\d{8}-\d{6}$/);
    expect(new Set(res.map((r) => r.id)).size).to.equal(200);
    await waitAll(() => created!.messages, res.map((r) => r.id!), 30_000);
    // The published tickets carry the numbers the API answered, once each.
    const mine = new Set(res.map((r) => r.id));
    const published = created!.messages.filter((m) => mine.has(m.body.id));
    expect(new Set(published.map((m) => m.body.number)).size).to.equal(200);
  });

  it('a 3-part SMS whose parts arrive on the two instances\' binds is one complete ticket', async () => {
    const text = '您好，我们小区的垃圾已经三天没有人清运了，天气炎热气味很大，蚊蝇很多，居民反映强烈，请环卫部门尽快处理。小区地址是幸福路18号。';
    const segs = smscA.segments(text, { method: 'udh8', ref: 0x5a, parts: 3, from: '13912345678' });
    // Part 2 on A's bind, 1 and 3 on B's: neither instance ever holds the whole message alone.
    expect(await smscA.deliver(segs[1]!)).to.equal(0);
    expect(await smscB.deliver(segs[0]!)).to.equal(0);
    expect(await smscB.deliver(segs[2]!)).to.equal(0);
    const [t] = await created!.waitFor((m) => m.body.channel === 'sms' && m.body.citizen?.phone?.endsWith('13912345678'), 1, 15_000);
    expect(t!.body.content).to.equal(text);
    expect(t!.body.incomplete).to.equal(false);
    const all = await created!.settle((m) => m.body.channel === 'sms' && m.body.citizen?.phone?.endsWith('13912345678'), 1500);
    expect(all, 'one ticket, not one per instance or per part').to.have.length(1);
    tickets.set(t!.body.id, t!.body.deadline.respondBy);
  });

  it('the same SMS delivered on both instances\' binds (an SMSC retry after a lost response) is one ticket', async () => {
    const text = '市民反映：人民路公交站的站牌被撞倒了，请尽快修复。';
    const from = '13700001111';
    expect(await smscA.deliverText(text, { from })).to.equal(0);
    expect(await smscB.deliverText(text, { from })).to.equal(0);
    const mine = (m: Received) => m.body.channel === 'sms' && m.body.citizen?.phone?.endsWith(from);
    const [t] = await created!.waitFor(mine, 1, 15_000);
    expect(await created!.settle(mine, 1500)).to.have.length(1);
    tickets.set(t!.body.id, t!.body.deadline.respondBy);
  });

  it('an attachment posted to one instance is served by the other', async () => {
    const photo = Buffer.concat([Buffer.from('ffd8ffe000104a464946', 'hex'), Buffer.from(`cluster-photo-${Date.now()}`), Buffer.from('ffd9', 'hex')]);
    const p = await postTicket(a.baseUrl, {
      clientMessageId: 'with-photo',
      citizen: { id: 'u-photo' },
      content: '路面塌陷，见照片',
      attachments: [{ fileName: 'hole.jpg', mimeType: 'image/jpeg', dataBase64: photo.toString('base64') }],
    });
    expect(p.status).to.equal(202);
    remember(p);
    const [t] = await created!.waitFor((m) => m.body.id === p.id, 1, 15_000);
    const att = t!.body.attachments[0] as { sha256: string; url: string };
    for (const gw of [b, a]) {
      const r = await fetch(`${gw.baseUrl}/api/v1/attachments/${att.sha256}`, { headers: { authorization: `Bearer ${TEST_DOWNSTREAM_KEY}` } });
      expect(r.status, `GET on ${gw === a ? 'A' : 'B'}`).to.equal(200);
      expect(Buffer.from(await r.arrayBuffer()).equals(photo)).to.equal(true);
    }
  });

  it('a replyId posted to both instances at once, and put twice on tickets.replies, is sent once', async () => {
    // An SMS ticket, so every send is a submit_sm the test SMSCs record, whichever instance sends it.
    const from = '13600002222';
    expect(await smscB.deliverText('小区电梯坏了，老人上下楼很困难', { from })).to.equal(0);
    const [t] = await created!.waitFor((m) => m.body.channel === 'sms' && m.body.citizen?.phone?.endsWith(from), 1, 15_000);
    const id = t!.body.id as string;
    const reply = (gw: GatewayProcess) =>
      fetch(`${gw.baseUrl}/api/v1/tickets/${id}/replies`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${TEST_DOWNSTREAM_KEY}` },
        body: JSON.stringify({ replyId: 'once-1', text: '电梯维保单位今天下午到场维修' }),
      });
    const [ra, rb] = await Promise.all([reply(a), reply(b)]);
    expect([ra.status, rb.status].sort()).to.deep.equal([200, 202]);
    // Both instances consume tickets.replies: one copy each.
    await publishJson(vhost.url, 'tickets.replies', { ticketId: id, replyId: 'once-2', text: '电梯已修好，请您确认' });
    await publishJson(vhost.url, 'tickets.replies', { ticketId: id, replyId: 'once-2', text: '电梯已修好，请您确认' });
    const responded = (m: Received) => m.routingKey === 'ticket.responded.sms' && m.body.ticketId === id;
    await events!.waitFor(responded, 2, 15_000);
    await sleep(1500);
    const sent = (text: string) => [...smscA.messages(), ...smscB.messages()].filter((m) => m.destination.endsWith(from) && m.text === text);
    expect(sent('电梯维保单位今天下午到场维修'), 'replyId once-1 sent').to.have.length(1);
    expect(sent('电梯已修好，请您确认'), 'replyId once-2 sent').to.have.length(1);
    const per = countBy(events!.messages.filter(responded), (m) => m.body.replyId);
    expect(Object.fromEntries(per)).to.deep.equal({ 'once-1': 1, 'once-2': 1 });
  });

  it('each deadline warning and breach fires once across the two instances, about on time', async function () {
    const ids = [...tickets.keys()];
    expect(ids.length).to.be.at.least(200);
    const kind = (k: string) => (m: Received) => m.routingKey.startsWith(`ticket.deadline.${k}.`) && tickets.has(m.body.ticketId);
    const latest = Math.max(...[...tickets.values()].map((r) => Date.parse(r)));
    await sleep(Math.max(0, latest - Date.now()));
    await waitAll(() => events!.messages.filter(kind('breached')), ids, 15_000, (m) => m.body.ticketId);
    // Long enough for a second instance's duplicate to show up.
    await sleep(2000);
    const warnings = countBy(events!.messages.filter(kind('warning')), (m) => m.body.ticketId);
    const breaches = countBy(events!.messages.filter(kind('breached')), (m) => m.body.ticketId);
    // Lateness by the event's own `at` against when it was due.
    const late = (k: string, dueOf: (respondBy: number) => number) =>
      events!.messages.filter(kind(k)).map((m) => Date.parse(m.body.at) - dueOf(Date.parse(m.body.respondBy)));
    const gap = DEADLINE_MS * (1 - WARNING_RATIO);
    const warnLate = late('warning', (r) => r - gap);
    const breachLate = late('breached', (r) => r);
    const stats = (xs: number[]) => {
      const s = [...xs].sort((p, q) => p - q);
      return { min: s[0]!, p50: s[Math.floor(s.length / 2)]!, max: s[s.length - 1]! };
    };
    const skipped = ids.length - warnings.size;
    console.log(
      `      deadline lateness over ${ids.length} tickets, ms: warning ${JSON.stringify(stats(warnLate))}, breach ${JSON.stringify(stats(breachLate))}; ${skipped} warnings skipped`,
    );
    expect([...warnings].filter(([, n]) => n > 1), 'warnings fired more than once').to.deep.equal([]);
    expect([...breaches].filter(([, n]) => n > 1), 'breaches fired more than once').to.deep.equal([]);
    expect(breaches.size, 'tickets with a breach').to.equal(ids.length);
    // The scheduler skips a warning whose breach is due too (contract §3). On a machine so
    // loaded that warnings run seconds late that happens, and says nothing about the cluster;
    // while they run on time none may be missing.
    if (Math.max(...warnLate) < gap / 2) expect(skipped, 'warnings missing although the scheduler kept time').to.equal(0);
    // Never early; "within 1 s" is the contract, checked loosely on a shared 2-core machine.
    expect(Math.min(...warnLate, ...breachLate)).to.be.at.least(-50);
    expect(Math.max(...breachLate)).to.be.below(5000);
  });
});
