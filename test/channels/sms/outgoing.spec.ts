import { expect } from 'chai';
import { SERVICE_NUMBER, type RecordedSubmit } from '../../support/smsc.js';
import { has, marker, nextPhone, startRig, type SmsRig } from './helpers.js';

const LONG_ZH =
  '您反映的金十路路灯故障问题，经市政管理部门现场核实，系线路老化导致短路。维修人员已于今日下午完成线路更换，路灯已恢复正常照明。' +
  '如仍有问题，请再次通过12345热线反映。感谢您对城市管理工作的关心和支持！本次工单将在您确认后办结，如对处理结果不满意，可回复本短信说明理由。';

async function ticketFor(rig: SmsRig, text: string, opts: { from?: string; to?: string } = {}) {
  const m = marker('out');
  const sender = opts.from ?? nextPhone();
  expect(await rig.smsc.deliverText(`${text} ${m}`, { from: sender, ...(opts.to ? { to: opts.to } : {}) })).to.equal(0);
  const [t] = await rig.gw.created.waitFor(has(m));
  return { ticket: t!.body, sender };
}

function partsTo(rig: SmsRig, dest: string): RecordedSubmit[] {
  return rig.smsc.submits.filter((s) => s.destination === dest);
}

describe('sms outgoing (submit_sm)', function () {
  this.timeout(60_000);
  let rig: SmsRig;
  before(async () => {
    rig = await startRig({ SMS_WINDOW: 2 });
  });
  after(async () => {
    await rig?.stop();
  });

  it('the receipt goes to the citizen as UCS-2 from the service number (and extension), with a delivery receipt requested', async () => {
    const { ticket, sender } = await ticketFor(rig, '路灯不亮', { to: `${SERVICE_NUMBER}88` });
    const msg = await rig.smsc.waitForMessage((m) => m.destination === sender);
    expect(msg.text).to.contain(ticket.number);
    expect(msg.dataCoding).to.equal(8);
    expect(msg.source).to.equal(`${SERVICE_NUMBER}88`);
    expect(msg.parts[0]!.registeredDelivery & 1).to.equal(1);
    const [ack] = await rig.gw.events.waitFor((e) => e.routingKey === 'ticket.acknowledged.sms' && e.body.ticketId === ticket.id);
    expect(ack!.body.number).to.equal(ticket.number);
  });

  it('a long Chinese reply arrives as concatenated UCS-2 parts (8-bit UDH, ≤ 67 characters each)', async () => {
    const { ticket, sender } = await ticketFor(rig, '路灯坏了');
    await rig.smsc.waitForMessage((m) => m.destination === sender);
    const res = await rig.gw.post(`/api/v1/tickets/${ticket.id}/replies`, { replyId: marker('r'), text: LONG_ZH });
    expect(res.status).to.equal(202);
    const msg = await rig.smsc.waitForMessage((m) => m.destination === sender && m.parts.length > 1);
    expect(msg.text).to.equal(LONG_ZH);
    expect(msg.dataCoding).to.equal(8);
    expect(msg.parts.length).to.equal(Math.ceil(LONG_ZH.length / 67));
    for (const p of msg.parts) {
      expect(p.esmClass & 0x40).to.equal(0x40);
      expect([...p.shortMessage.subarray(0, 3)]).to.deep.equal([5, 0, 3]);
      expect(p.body.length).to.be.at.most(134);
    }
    await rig.gw.events.waitFor((e) => e.routingKey === 'ticket.responded.sms' && e.body.ticketId === ticket.id);
  });

  it('a reply in the GSM alphabet goes as GSM 7-bit, split at 153 septets', async () => {
    const { ticket, sender } = await ticketFor(rig, 'lamp broken');
    await rig.smsc.waitForMessage((m) => m.destination === sender);
    const text = `Dear citizen, the street light {No. 17} was repaired today. ${'Thank you for your report. '.repeat(8)}`.trim();
    expect((await rig.gw.post(`/api/v1/tickets/${ticket.id}/replies`, { replyId: marker('r'), text })).status).to.equal(202);
    const msg = await rig.smsc.waitForMessage((m) => m.destination === sender && m.parts.length > 1);
    expect(msg.text).to.equal(text);
    expect(msg.parts.length).to.equal(2);
    expect(msg.parts[0]!.body.length).to.equal(153);
  });

  it('delivery receipts update the reply status and never become tickets', async () => {
    const { ticket, sender } = await ticketFor(rig, '下水道堵塞');
    const msg = await rig.smsc.waitForMessage((m) => m.destination === sender);
    const before = rig.gw.created.messages.length;
    expect(await rig.smsc.deliverReceipt(msg.messageIds[0]!, 'DELIVRD', { source: sender })).to.equal(0);
    const row = async () => (await rig.gw.gateway.store.outboundOfTicket(ticket.id, 10)).find((o) => o.kind === 'receipt')!;
    expect((await row()).delivery).to.equal('DELIVRD');
    // TLV form, with the id in decimal where submit_sm_resp gave hex.
    expect(await rig.smsc.deliverReceipt(BigInt(`0x${msg.messageIds[0]}`).toString(10), 'UNDELIV', { tlv: true, source: sender })).to.equal(0);
    expect((await row()).delivery).to.equal('UNDELIV');
    expect(await rig.gw.created.settle((m) => m.body.channel === 'sms', 500)).to.have.length(before);
  });

  it('keeps at most SMS_WINDOW submits unacknowledged', async () => {
    const { ticket, sender } = await ticketFor(rig, '供暖不热');
    await rig.smsc.waitForMessage((m) => m.destination === sender);
    rig.smsc.holdSubmits();
    rig.smsc.maxOutstanding = 0;
    try {
      for (let i = 0; i < 4; i++) {
        expect((await rig.gw.post(`/api/v1/tickets/${ticket.id}/replies`, { replyId: marker(`w${i}`), text: `第${i}条答复` })).status).to.equal(202);
      }
      await rig.smsc.waitUntil(() => rig.smsc.heldSubmits >= 2, 10_000, 'two held submits');
      await new Promise((r) => setTimeout(r, 300));
      expect(rig.smsc.heldSubmits).to.equal(2);
    } finally {
      rig.smsc.releaseSubmits();
    }
    await rig.smsc.waitUntil(() => partsTo(rig, sender).length >= 5, 10_000, 'all replies');
    expect(rig.smsc.maxOutstanding).to.equal(2);
  });

  it('ESME_RTHROTTLED is retried until the SMSC accepts', async () => {
    let throttles = 0;
    rig.smsc.submitStatus = () => (throttles++ < 2 ? 0x58 : 0);
    try {
      const { ticket, sender } = await ticketFor(rig, '道路积水');
      const msg = await rig.smsc.waitForMessage((m) => m.destination === sender, 20_000);
      expect(msg.text).to.contain(ticket.number);
      expect(rig.smsc.submits.filter((s) => s.destination === sender && s.commandStatus === 0x58)).to.have.length(2);
    } finally {
      rig.smsc.submitStatus = () => 0;
    }
  });

  it('a long reply cut off by throttling resumes with the missing parts under the same reference', async () => {
    const { ticket, sender } = await ticketFor(rig, '绿化带杂草丛生');
    await rig.smsc.waitForMessage((m) => m.destination === sender);
    let throttled = false;
    rig.smsc.submitStatus = (s) => {
      if (s.destination === sender && s.concat?.seq === 2 && !throttled) {
        throttled = true;
        return 0x58;
      }
      return 0;
    };
    try {
      expect((await rig.gw.post(`/api/v1/tickets/${ticket.id}/replies`, { replyId: marker('part'), text: LONG_ZH })).status).to.equal(202);
      const msg = await rig.smsc.waitForMessage((m) => m.destination === sender && m.parts.length > 1, 20_000);
      expect(msg.text).to.equal(LONG_ZH);
      const long = partsTo(rig, sender).filter((p) => p.concat);
      expect(long.filter((p) => p.concat!.seq === 1), 'part 1 submitted once').to.have.length(1);
      expect(new Set(long.map((p) => p.concat!.ref)).size, 'one reference').to.equal(1);
    } finally {
      rig.smsc.submitStatus = () => 0;
    }
  });

  it('a permanent refusal becomes reply.failed with the command_status', async () => {
    const { ticket, sender } = await ticketFor(rig, '垃圾未清运');
    await rig.smsc.waitForMessage((m) => m.destination === sender);
    rig.smsc.submitStatus = (s) => (s.destination === sender ? 0x0b : 0); // ESME_RINVDSTADR
    try {
      const replyId = marker('perm');
      expect((await rig.gw.post(`/api/v1/tickets/${ticket.id}/replies`, { replyId, text: '已处理' })).status).to.equal(202);
      const [f] = await rig.gw.repliesFailed.waitFor((m) => m.body.replyId === replyId);
      expect(JSON.stringify(f!.body.error)).to.contain('11'); // 0x0b
      expect(f!.routingKey).to.equal('reply.failed.sms');
    } finally {
      rig.smsc.submitStatus = () => 0;
    }
  });
});

describe('sms outgoing rate', function () {
  this.timeout(60_000);
  let rig: SmsRig;
  before(async () => {
    rig = await startRig({ SMS_TPS: 2 });
  });
  after(async () => {
    await rig?.stop();
  });

  it('starts at most SMS_TPS submits in any second', async () => {
    const { ticket, sender } = await ticketFor(rig, '路灯坏了');
    await rig.smsc.waitForMessage((m) => m.destination === sender);
    for (let i = 0; i < 4; i++) await rig.gw.post(`/api/v1/tickets/${ticket.id}/replies`, { replyId: marker(`t${i}`), text: `答复${i}` });
    await rig.smsc.waitUntil(() => partsTo(rig, sender).length >= 5, 15_000, 'five submits');
    const at = rig.smsc.submits.map((s) => s.at).sort((a, b) => a - b);
    // Any three consecutive submits span about a second (arrival times at the SMSC jitter by a few ms).
    for (let i = 2; i < at.length; i++) expect(at[i]! - at[i - 2]!).to.be.at.least(900);
  });
});
