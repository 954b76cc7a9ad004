import { expect } from 'chai';
import iconv from 'iconv-lite';
import { SERVICE_NUMBER, fillBitsAfter, packGsm7, type ConcatMethod } from '../../support/smsc.js';
import { from, has, marker, nextPhone, startRig, type SmsRig } from './helpers.js';

const ZH = '您好，我家楼下的路灯已经坏了一个星期，晚上非常黑，老人孩子出行很不安全，请有关部门尽快派人维修，谢谢！';

describe('sms intake (SMPP deliver_sm → ticket)', function () {
  this.timeout(60_000);
  let rig: SmsRig;
  before(async () => {
    rig = await startRig();
  });
  after(async () => {
    await rig?.stop();
  });

  describe('data codings', () => {
    it('0: GSM 7-bit with extension-table characters', async () => {
      const m = marker('gsm');
      const text = `Streetlight broken {Jingshi Rd} [no. 5] ~50€ @night_${m}`;
      expect(await rig.smsc.deliverText(text, { coding: 0, from: nextPhone() })).to.equal(0);
      const [t] = await rig.gw.created.waitFor(has(m));
      expect(t!.body.content).to.equal(text);
      expect(t!.body.source.dataCoding).to.equal(0);
    });

    it('1: IA5/ASCII read as ASCII, not the GSM table', async () => {
      const m = marker('ia5');
      const text = `pipe_burst {a} [b] \\ ^ ~ | @ $ ${m}`;
      expect(await rig.smsc.deliverText(text, { coding: 1, from: nextPhone() })).to.equal(0);
      const [t] = await rig.gw.created.waitFor(has(m));
      expect(t!.body.content).to.equal(text);
    });

    it('3: Latin-1', async () => {
      const m = marker('lat');
      const text = `Straße kaputt, café geschlossen ${m}`;
      expect(await rig.smsc.deliverText(text, { coding: 3, from: nextPhone() })).to.equal(0);
      const [t] = await rig.gw.created.waitFor(has(m));
      expect(t!.body.content).to.equal(text);
    });

    it('8: UCS-2 with Chinese and an emoji', async () => {
      const m = marker('ucs');
      const text = `小区停电了，请尽快处理🙏 ${m}`;
      expect(await rig.smsc.deliverText(text, { coding: 8, from: nextPhone() })).to.equal(0);
      const [t] = await rig.gw.created.waitFor(has(m));
      expect(t!.body.content).to.equal(text);
      expect(t!.body.language).to.equal('zh');
    });

    it('15: GB-coded Chinese (GBK)', async () => {
      const m = marker('gbk');
      const text = `噪音扰民严重，堃园小区工地夜间施工 ${m}`;
      // What the gateway reads is GBK octets, not UTF-8 or UTF-16.
      expect(iconv.decode(iconv.encode(text, 'gbk'), 'utf8')).to.not.equal(text);
      expect(await rig.smsc.deliverText(text, { coding: 15, from: nextPhone() })).to.equal(0);
      const [t] = await rig.gw.created.waitFor(has(m));
      expect(t!.body.content).to.equal(text);
      expect(t!.body.source.dataCoding).to.equal(15);
    });

    it('0 with packed septets (against the SMPP convention): a ticket with the text', async () => {
      const sender = nextPhone();
      const octets = packGsm7('Hello world');
      expect(octets.toString('hex')).to.equal('c8329bfd06dddf723619');
      expect(await rig.smsc.deliver({ source_addr: sender, data_coding: 0, short_message: octets })).to.equal(0);
      const [t] = await rig.gw.created.waitFor(from(sender));
      expect(t!.body.content).to.equal('Hello world');
      expect(t!.body.source).to.include({ dataCoding: 0, gsm7Packed: true });
    });

    it('0 with packed septets in two UDH segments, each packed after its own header', async () => {
      const m = marker('pk');
      const sender = nextPhone();
      const halves = ['Streetlight at Jingshi Road 5 is broken, ', `please repair {urgent} ${m}`];
      const segs = halves.map((h, i) => Buffer.concat([Buffer.from([5, 0, 3, 0x5c, 2, i + 1]), packGsm7(h, fillBitsAfter(6))]));
      for (const sm of segs.reverse()) expect(await rig.smsc.deliver({ source_addr: sender, data_coding: 0, esm_class: 0x40, short_message: sm })).to.equal(0);
      const [t] = await rig.gw.created.waitFor(has(m));
      expect(t!.body.content).to.equal(halves.join(''));
      expect(t!.body.source).to.include({ segments: 2, gsm7Packed: true });
    });

    it('0 with octets above 0x7F that are not packed text: acknowledged, intake.rejected (undecodable) with the octets, no ticket', async () => {
      const cases = [Buffer.from([0x80, 0x81, 0x82, 0x83]), Buffer.from('Straße kaputt, Grüße', 'latin1')];
      for (const octets of cases) {
        const sender = nextPhone();
        expect(await rig.smsc.deliver({ source_addr: sender, data_coding: 0, short_message: octets })).to.equal(0);
        const [r] = await rig.gw.rejected.waitFor((x) => x.body.channel === 'sms' && JSON.stringify(x.body).includes(sender));
        expect(r!.routingKey).to.equal('intake.rejected.sms');
        expect(r!.body.reason).to.equal('undecodable');
        expect(r!.body.detail).to.match(/octets above 0x7F/);
        expect(r!.body.rawEncoding).to.equal('utf8');
        expect(JSON.parse(r!.body.raw).parts[0]).to.include({ data_coding: 0, hex: octets.toString('hex') });
        expect(await rig.gw.created.settle(from(sender), 300)).to.have.length(0);
      }
    });

    it('binary (4): acknowledged, recorded on intake.rejected, no ticket', async () => {
      const sender = nextPhone();
      const before = rig.gw.created.messages.length;
      expect(await rig.smsc.deliver({ source_addr: sender, data_coding: 4, short_message: Buffer.from([0xca, 0xfe, 0x01]) })).to.equal(0);
      const [r] = await rig.gw.rejected.waitFor((x) => x.body.channel === 'sms' && JSON.stringify(x.body).includes(sender));
      expect(r!.body.reason).to.equal('unsupported_coding');
      expect(r!.routingKey).to.equal('intake.rejected.sms');
      expect(rig.gw.created.messages.length).to.equal(before);
    });

    it('a message to another number is rejected input, not a ticket', async () => {
      const sender = nextPhone();
      expect(await rig.smsc.deliverText('hello', { from: sender, to: '10086' })).to.equal(0);
      const [r] = await rig.gw.rejected.waitFor((x) => x.body.channel === 'sms' && JSON.stringify(x.body).includes(sender));
      expect(r!.body.reason).to.equal('not_service_number');
    });
  });

  describe('ticket fields', () => {
    it('citizen phone in E.164, extension kept in source, sentAt null', async () => {
      const m = marker('ext');
      expect(await rig.smsc.deliverText(`井盖丢失 ${m}`, { from: '8613912345678', to: `${SERVICE_NUMBER}07` })).to.equal(0);
      const [t] = await rig.gw.created.waitFor(has(m));
      expect(t!.body.citizen).to.deep.equal({ channelUserId: '8613912345678', phone: '+8613912345678', email: null, name: null });
      expect(t!.body.source).to.include({ serviceNumber: SERVICE_NUMBER, extension: '07', segments: 1 });
      expect(t!.body.sentAt).to.equal(null);
      expect(t!.body.deadline.duration).to.equal('PT3M');
    });
  });

  describe('long messages', () => {
    const methods: ConcatMethod[] = ['udh8', 'udh16', 'sar'];
    let ref = 0x40;
    for (const method of methods) {
      it(`${method}: 3 parts in order`, async () => {
        const m = marker(method);
        const sender = nextPhone();
        for (const seg of rig.smsc.segments(`${ZH}${m}`, { method, ref: ref++, parts: 3, from: sender })) expect(await rig.smsc.deliver(seg)).to.equal(0);
        const [t] = await rig.gw.created.waitFor(has(m));
        expect(t!.body.content).to.equal(`${ZH}${m}`);
        expect(t!.body.incomplete).to.equal(false);
        expect(t!.body.source.segments).to.equal(3);
        expect(t!.body.channelMessageIds).to.have.length(3);
      });

      it(`${method}: 3 parts reversed`, async () => {
        const m = marker(method);
        const sender = nextPhone();
        const segs = rig.smsc.segments(`${ZH}${m}`, { method, ref: ref++, parts: 3, from: sender }).reverse();
        for (const seg of segs) expect(await rig.smsc.deliver(seg)).to.equal(0);
        const [t] = await rig.gw.created.waitFor(has(m));
        expect(t!.body.content).to.equal(`${ZH}${m}`);
      });

      it(`${method}: interleaved with another sender using the same reference`, async () => {
        const [ma, mb] = [marker('a'), marker('b')];
        const [a, b] = [nextPhone(), nextPhone()];
        const r = ref++;
        const sa = rig.smsc.segments(`${ZH}${ma}`, { method, ref: r, parts: 3, from: a });
        const sb = rig.smsc.segments(`市民反映：${ZH}${mb}`, { method, ref: r, parts: 3, from: b });
        // Concurrent, as an SMSC with a window does it.
        const order = [sa[1], sb[2], sa[0], sb[0], sa[2], sb[1]];
        const statuses = await Promise.all(order.map((s) => rig.smsc.deliver(s!)));
        expect(statuses).to.deep.equal([0, 0, 0, 0, 0, 0]);
        const [ta] = await rig.gw.created.waitFor(has(ma));
        const [tb] = await rig.gw.created.waitFor(has(mb));
        expect(ta!.body.content).to.equal(`${ZH}${ma}`);
        expect(ta!.body.citizen.channelUserId).to.equal(a);
        expect(tb!.body.content).to.equal(`市民反映：${ZH}${mb}`);
        expect(tb!.body.citizen.channelUserId).to.equal(b);
      });
    }

    it('an emoji whose surrogate pair is split between two segments', async () => {
      const m = marker('emoji');
      const text = `路灯坏了👍请修 ${m}`;
      // Cut between the high and the low surrogate of 👍 (after 4 chars + 1 unit).
      const segs = rig.smsc.segments(text, { method: 'udh8', ref: 0x11, parts: 2, cuts: [10], from: nextPhone() });
      expect(segs[0]!.short_message).to.satisfy((b: Buffer) => b.readUInt16BE(b.length - 2) === 0xd83d);
      for (const s of segs.reverse()) expect(await rig.smsc.deliver(s)).to.equal(0);
      const [t] = await rig.gw.created.waitFor(has(m));
      expect(t!.body.content).to.equal(text);
    });

    it('GBK with a double-byte character split between SAR segments', async () => {
      const m = marker('gbks');
      const text = `噪音扰民严重 ${m}`;
      const segs = rig.smsc.segments(text, { method: 'sar', ref: 0x1234, parts: 2, cuts: [5], coding: 15, from: nextPhone() });
      for (const s of segs) expect(await rig.smsc.deliver(s)).to.equal(0);
      const [t] = await rig.gw.created.waitFor(has(m));
      expect(t!.body.content).to.equal(text);
    });

    it('message_payload carries a long message in one PDU', async () => {
      const m = marker('payload');
      const text = `${ZH}${ZH}${ZH}${m}`;
      const bytes = Buffer.from(text, 'utf16le').swap16();
      expect(bytes.length).to.be.greaterThan(254);
      expect(await rig.smsc.deliver({ source_addr: nextPhone(), short_message: Buffer.alloc(0), message_payload: bytes })).to.equal(0);
      const [t] = await rig.gw.created.waitFor(has(m));
      expect(t!.body.content).to.equal(text);
      expect(t!.body.source.messagePayload).to.equal(true);
    });

    it('a duplicated segment and a redelivered final segment make one ticket', async () => {
      const m = marker('dupseg');
      const sender = nextPhone();
      const [s1, s2, s3] = rig.smsc.segments(`${ZH}${m}`, { method: 'udh8', ref: 0x77, parts: 3, from: sender });
      for (const s of [s1, s1, s2, s3, s3, s2]) expect(await rig.smsc.deliver(s!)).to.equal(0);
      await rig.gw.created.waitFor(has(m));
      const all = await rig.gw.created.settle(from(sender), 800);
      expect(all).to.have.length(1);
      expect(all[0]!.body.content).to.equal(`${ZH}${m}`);
    });

    it('the same single PDU redelivered within the dedupe window: one ticket', async () => {
      const m = marker('dup');
      const sender = nextPhone();
      for (let i = 0; i < 3; i++) expect(await rig.smsc.deliverText(`污水外溢 ${m}`, { from: sender })).to.equal(0);
      await rig.gw.created.waitFor(has(m));
      expect(await rig.gw.created.settle(from(sender), 800)).to.have.length(1);
    });
  });
});

describe('sms intake: segments that never all arrive', function () {
  this.timeout(60_000);
  let rig: SmsRig;
  before(async () => {
    rig = await startRig({ SMS_REASSEMBLY_TIMEOUT: '1500ms' });
  });
  after(async () => {
    await rig?.stop();
  });

  it('publishes what arrived with incomplete: true after SMS_REASSEMBLY_TIMEOUT', async () => {
    const m = marker('lost');
    const sender = nextPhone();
    const [s1, , s3] = rig.smsc.segments(`${m}${ZH}尾部`, { method: 'udh16', ref: 0xbeef, parts: 3, from: sender });
    expect(await rig.smsc.deliver(s1!)).to.equal(0);
    expect(await rig.smsc.deliver(s3!)).to.equal(0);
    const [t] = await rig.gw.created.waitFor(has(m), 1, 15_000);
    expect(t!.body.incomplete).to.equal(true);
    expect(t!.body.content.startsWith(m)).to.equal(true);
    expect(t!.body.content.endsWith('尾部')).to.equal(true);
    expect(t!.body.source.missingSegments).to.deep.equal([2]);
    expect(await rig.gw.created.settle(from(sender), 500)).to.have.length(1);
  });

  it('segments left over while the gateway was down are published at the next start', async () => {
    const m = marker('down');
    const sender = nextPhone();
    const [s1] = rig.smsc.segments(`${m}${ZH}`, { method: 'udh8', ref: 0x66, parts: 2, from: sender });
    expect(await rig.smsc.deliver(s1!)).to.equal(0);
    const binds = rig.smsc.binds;
    await rig.gw.gateway.stop();
    await new Promise((r) => setTimeout(r, 1600));
    await rig.gw.restart();
    await rig.smsc.waitForBind(binds + 1);
    const [t] = await rig.gw.created.waitFor(has(m), 1, 15_000);
    expect(t!.body.incomplete).to.equal(true);
    expect(t!.body.source.missingSegments).to.deep.equal([2]);
  });

  it('a late copy of a segment of an accepted message does not become a second ticket', async () => {
    const m = marker('late');
    const sender = nextPhone();
    const segs = rig.smsc.segments(`${ZH}${m}`, { method: 'udh8', ref: 0x21, parts: 2, from: sender });
    for (const s of segs) expect(await rig.smsc.deliver(s)).to.equal(0);
    await rig.gw.created.waitFor(has(m));
    // The SMSC did not see our answer to the last part and sends it again.
    expect(await rig.smsc.deliver(segs[1]!)).to.equal(0);
    // Past the reassembly timeout nothing else appears for this sender.
    expect(await rig.gw.created.settle(from(sender), 3000)).to.have.length(1);
  });
});
