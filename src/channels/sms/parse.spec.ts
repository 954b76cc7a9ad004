import { expect } from 'chai';
import fc from 'fast-check';
import iconv from 'iconv-lite';
import {
  assemble,
  citizenFromAddress,
  classify,
  concatFromIes,
  extensionOf,
  GAP_MARK,
  groupOf,
  isDoneDuplicate,
  parseReceipt,
  receiptIdVariants,
  recordDone,
  splitUdh,
  type Segment,
} from './parse.js';
import { fillBitsAfter, packGsm7 } from '../../../test/support/smsc.js';

const SVC = '106353112345';
const ZH = '您好，我家楼下的路灯已经坏了一个星期，晚上非常黑，老人孩子出行很不安全，请有关部门尽快派人维修。';
const ucs2 = (s: string) => Buffer.from(s, 'utf16le').swap16();

function pdu(over: Record<string, unknown>): Record<string, unknown> {
  return {
    command: 'deliver_sm',
    source_addr: '13800138000',
    source_addr_ton: 1,
    source_addr_npi: 1,
    destination_addr: SVC,
    esm_class: 0,
    data_coding: 8,
    short_message: ucs2('你好'),
    ...over,
  };
}

function seg(over: Record<string, unknown>): Segment {
  const c = classify(pdu(over), { serviceNumber: SVC });
  if (c.kind !== 'segment') throw new Error(`expected a segment, got ${c.kind}: ${JSON.stringify(c)}`);
  return c.segment;
}

/** Split bytes into `n` UDH segments (8-bit ref) the way a handset does, without caring for character boundaries. */
function udhSegments(body: Buffer, n: number, ref: number, bits: 8 | 16 = 8): Buffer[] {
  const size = Math.ceil(body.length / n);
  const out: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const udh = bits === 8 ? Buffer.from([5, 0, 3, ref, n, i + 1]) : Buffer.from([6, 8, 4, ref >> 8, ref & 0xff, n, i + 1]);
    out.push(Buffer.concat([udh, body.subarray(i * size, (i + 1) * size)]));
  }
  return out;
}

const OPTS = { serviceNumber: SVC, dedupeWindowMs: 600_000 };

describe('sms/parse', () => {
  describe('UDH', () => {
    it('walks the IE list: 8-bit and 16-bit concatenation among other IEs', () => {
      const s = splitUdh(Buffer.from([0x08, 0x24, 0x01, 0x00, 0x00, 0x03, 0xa7, 0x02, 0x02, 0x41]));
      expect(s.ok).to.equal(true);
      if (!s.ok) return;
      expect(s.ies.map((i) => i.iei)).to.deep.equal([0x24, 0x00]);
      expect(s.body).to.deep.equal(Buffer.from([0x41]));
      expect(concatFromIes(s.ies)).to.deep.equal({ method: 'udh8', ref: 0xa7, total: 2, seq: 2 });
      const s16 = splitUdh(Buffer.from([6, 8, 4, 0x12, 0x34, 2, 1]));
      expect(s16.ok && concatFromIes(s16.ies)).to.deep.equal({ method: 'udh16', ref: 0x1234, total: 2, seq: 1 });
    });

    it('refuses a UDH longer than the message or an IE overrunning it', () => {
      expect(splitUdh(Buffer.from([9, 0, 3, 1])).ok).to.equal(false);
      expect(splitUdh(Buffer.from([3, 0, 3, 1, 0x41])).ok).to.equal(false);
    });

    it('ignores an invalid concatenation IE (seq 0 or above total)', () => {
      expect(concatFromIes([{ iei: 0, data: Buffer.from([1, 2, 3]) }])).to.equal(null);
      expect(concatFromIes([{ iei: 0, data: Buffer.from([1, 2, 0]) }])).to.equal(null);
    });
  });

  describe('classify', () => {
    it('a single UCS-2 message to the service number', () => {
      const s = seg({ short_message: ucs2(ZH) });
      expect(s.meta).to.include({ source: '13800138000', extension: '', total: 1, seq: 1, method: 'none', dataCoding: 8 });
      const a = assemble([s], OPTS);
      expect(a.kind).to.equal('inbound');
      if (a.kind !== 'inbound') return;
      expect(a.inbound.content).to.equal(ZH);
      expect(a.inbound.incomplete).to.equal(false);
      expect(a.inbound.citizen).to.deep.equal({ channelUserId: '13800138000', phone: '+8613800138000', email: null, name: null });
      expect(a.inbound.source).to.include({ serviceNumber: SVC, extension: null, dataCoding: 8, segments: 1 });
      expect(a.inbound.dedupeWindowMs).to.equal(600_000);
      expect(a.inbound.sentAt).to.equal(null);
      expect(a.inbound.consumesPartsGroup).to.equal(undefined);
    });

    it('keeps the extension of the service number', () => {
      const s = seg({ destination_addr: `${SVC}07` });
      expect(s.meta.extension).to.equal('07');
      const a = assemble([s], OPTS);
      expect(a.kind === 'inbound' && a.inbound.source.extension).to.equal('07');
    });

    it('rejects a destination that is not the service number', () => {
      const c = classify(pdu({ destination_addr: '10086' }), { serviceNumber: SVC });
      expect(c).to.include({ kind: 'reject', reason: 'not_service_number' });
    });

    it('a command field that cannot be turned into text is still a typed reject (found by the fuzz suite)', () => {
      const c = classify({ command: { toString: [] } }, { serviceNumber: SVC });
      expect(c).to.include({ kind: 'reject', reason: 'parse_error' });
    });

    it('rejects a malformed PDU with the reason and the raw fields', () => {
      const c = classify(pdu({ source_addr: undefined }), { serviceNumber: SVC });
      expect(c.kind).to.equal('reject');
      if (c.kind === 'reject') {
        expect(c.reason).to.equal('parse_error');
        expect(JSON.parse(c.raw)).to.have.property('short_message');
      }
    });

    it('rejects application-port (WAP push) messages', () => {
      const c = classify(pdu({ esm_class: 0x40, data_coding: 4, short_message: Buffer.from([6, 5, 4, 0x0b, 0x84, 0x23, 0xf0, 1, 2]) }), { serviceNumber: SVC });
      expect(c).to.include({ kind: 'reject', reason: 'unsupported_type' });
    });

    it('SAR TLVs name the segment', () => {
      const s = seg({ short_message: ucs2('第二段'), sar_msg_ref_num: 0x0102, sar_total_segments: 3, sar_segment_seqnum: 2 });
      expect(s.meta).to.include({ method: 'sar', ref: 0x0102, total: 3, seq: 2 });
    });

    it('message_payload carries the whole text', () => {
      const long = ZH.repeat(4);
      const s = seg({ short_message: Buffer.alloc(0), message_payload: ucs2(long) });
      expect(s.meta.field).to.equal('message_payload');
      const a = assemble([s], OPTS);
      expect(a.kind === 'inbound' && a.inbound.content).to.equal(long);
    });

    it('delivery receipts are never segments: text form', () => {
      const text = 'id:0123456789 sub:001 dlvrd:001 submit date:2611231400 done date:2611231401 stat:DELIVRD err:000 text:【12345】您的';
      const c = classify(pdu({ esm_class: 0x04, data_coding: 0, short_message: Buffer.from(text, 'latin1') }), { serviceNumber: SVC });
      expect(c.kind).to.equal('receipt');
      if (c.kind === 'receipt') expect(c.receipt).to.deep.equal({ id: '0123456789', stat: 'DELIVRD', err: '000' });
    });

    it('delivery receipts: TLVs win over the text', () => {
      const c = classify(
        pdu({ esm_class: 0x04, receipted_message_id: 'abc123', message_state: 5, short_message: Buffer.from('id:x stat:DELIVRD', 'latin1') }),
        { serviceNumber: SVC },
      );
      expect(c.kind === 'receipt' && c.receipt).to.deep.equal({ id: 'abc123', stat: 'UNDELIV', err: null });
    });

    it('a receipt without id is still not a ticket', () => {
      const c = classify(pdu({ esm_class: 0x04, short_message: Buffer.from('garbage', 'latin1') }), { serviceNumber: SVC });
      expect(c.kind === 'receipt' && c.receipt).to.equal(null);
    });
  });

  describe('assemble', () => {
    const parts8 = udhSegments(ucs2(`${ZH}👍完`), 3, 0xa7).map((b) => seg({ esm_class: 0x40, short_message: b }));

    it('joins 8-bit UDH segments in order, with the emoji split across segments', () => {
      // Cut the UTF-16 bytes so that a surrogate pair straddles a segment boundary.
      const body = ucs2(`路灯坏了👍请修`);
      const cut = 4 * 2 + 2; // between the high and low surrogate of 👍
      const segs = [body.subarray(0, cut), body.subarray(cut)].map((b, i) =>
        seg({ esm_class: 0x40, short_message: Buffer.concat([Buffer.from([5, 0, 3, 9, 2, i + 1]), b]) }),
      );
      const a = assemble(segs, OPTS);
      expect(a.kind === 'inbound' && a.inbound.content).to.equal('路灯坏了👍请修');
    });

    it('any order and duplicates give the same content and dedupe key', () => {
      fc.assert(
        fc.property(fc.shuffledSubarray([0, 1, 2, 0, 1, 2], { minLength: 6, maxLength: 6 }), (order) => {
          const a = assemble(order.map((i) => parts8[i]!), { ...OPTS, group: groupOf(parts8[0]!.meta) });
          const b = assemble(parts8, OPTS);
          expect(a.kind).to.equal('inbound');
          if (a.kind !== 'inbound' || b.kind !== 'inbound') return;
          expect(a.inbound.content).to.equal(`${ZH}👍完`);
          expect(a.inbound.dedupeKey).to.equal(b.inbound.dedupeKey);
          expect(a.inbound.source.segments).to.equal(3);
          expect(a.inbound.channelMessageIds).to.have.length(3);
        }),
      );
    });

    it('16-bit reference and SAR group apart from 8-bit with the same number', () => {
      const s16 = udhSegments(ucs2(ZH), 3, 0xa7, 16).map((b) => seg({ esm_class: 0x40, short_message: b }));
      expect(groupOf(s16[0]!.meta)).to.not.equal(groupOf(parts8[0]!.meta));
      expect(groupOf(s16[0]!.meta)).to.equal(groupOf(s16[2]!.meta));
      const a = assemble([s16[2]!, s16[0]!, s16[1]!], OPTS);
      expect(a.kind === 'inbound' && a.inbound.content).to.equal(ZH);
    });

    it('parts of different senders never share a group', () => {
      const other = seg({ source_addr: '13900139000', esm_class: 0x40, short_message: udhSegments(ucs2(ZH), 3, 0xa7)[0] });
      expect(groupOf(other.meta)).to.not.equal(groupOf(parts8[0]!.meta));
    });

    it('missing parts: incomplete, gaps marked, the rest decoded', () => {
      const a = assemble([parts8[0]!, parts8[2]!], OPTS);
      expect(a.kind).to.equal('inbound');
      if (a.kind !== 'inbound') return;
      expect(a.inbound.incomplete).to.equal(true);
      expect(a.inbound.content.startsWith(ZH.slice(0, 5))).to.equal(true);
      expect(a.inbound.content).to.contain(GAP_MARK);
      expect(a.inbound.source.missingSegments).to.deep.equal([2]);
      expect(a.inbound.content).to.not.match(/[\ud800-\udfff]/u); // well-formed, no lone surrogates
      const tail = assemble([parts8[0]!], OPTS);
      expect(tail.kind === 'inbound' && tail.inbound.content.endsWith(GAP_MARK)).to.equal(true);
    });

    it('GBK (data_coding 15) with a double-byte character split between segments', () => {
      const body = iconv.encode('噪音扰民严重', 'gbk');
      const segs = [body.subarray(0, 5), body.subarray(5)].map((b, i) =>
        seg({ data_coding: 15, esm_class: 0x40, short_message: Buffer.concat([Buffer.from([5, 0, 3, 1, 2, i + 1]), b]) }),
      );
      const a = assemble(segs.reverse(), OPTS);
      expect(a.kind === 'inbound' && a.inbound.content).to.equal('噪音扰民严重');
    });

    it('GSM 7-bit with UDH and an extension character', () => {
      const gsm = Buffer.from([0x48, 0x69, 0x20, 0x1b, 0x65, 0x35]);
      const s = seg({ data_coding: 0, esm_class: 0x40, short_message: Buffer.concat([Buffer.from([5, 0, 3, 1, 2, 1]), gsm]) });
      const s2 = seg({ data_coding: 0, esm_class: 0x40, short_message: Buffer.concat([Buffer.from([5, 0, 3, 1, 2, 2]), Buffer.from('0', 'latin1')]) });
      const a = assemble([s2, s], OPTS);
      expect(a.kind === 'inbound' && a.inbound.content).to.equal('Hi €50');
    });

    it('data_coding 0 with packed septets: the text, marked as packed', () => {
      const a = assemble([seg({ data_coding: 0, short_message: Buffer.from('c8329bfd06dddf723619', 'hex') })], OPTS);
      expect(a.kind).to.equal('inbound');
      if (a.kind !== 'inbound') return;
      expect(a.inbound.content).to.equal('Hello world');
      expect(a.inbound.source).to.include({ dataCoding: 0, gsm7Packed: true });
      // Unpacked GSM is not marked.
      const u = assemble([seg({ data_coding: 0, short_message: Buffer.from([0x48, 0x69]) })], OPTS);
      expect(u.kind === 'inbound' && u.inbound.source.gsm7Packed).to.equal(undefined);
    });

    it('packed segments, each after its own UDH, in any order; a part without a high octet is packed too', () => {
      const texts = ['Streetlight at Jingshi Road 5 ', 'has been broken for a week, ', 'please repair {urgent}'];
      const udh = (seq: number) => Buffer.from([5, 0, 3, 0x2a, 3, seq]);
      const parts = texts.map((t, i) => Buffer.concat([udh(i + 1), packGsm7(t, fillBitsAfter(6))]));
      const segs = parts.map((b) => seg({ data_coding: 0, esm_class: 0x40, short_message: b }));
      const a = assemble([segs[2]!, segs[0]!, segs[1]!], OPTS);
      expect(a.kind === 'inbound' && a.inbound.content).to.equal(texts.join(''));
      // 16-bit reference: a 7-octet UDH needs no fill bits.
      const s16 = texts.map((t, i) => seg({ data_coding: 0, esm_class: 0x40, short_message: Buffer.concat([Buffer.from([6, 8, 4, 1, 2, 3, i + 1]), packGsm7(t)]) }));
      const b = assemble(s16, OPTS);
      expect(b.kind === 'inbound' && b.inbound.content).to.equal(texts.join(''));
    });

    it('data_coding 0 with octets above 0x7F that are not packed text: undecodable, raw octets kept', () => {
      const cases: [string, Buffer][] = [
        ['0x80-0x83', Buffer.from([0x80, 0x81, 0x82, 0x83])],
        ['8-bit operator text (Latin-1)', Buffer.from('Straße kaputt, Grüße', 'latin1')],
        ['GBK', iconv.encode('小区停电了', 'gbk')],
      ];
      for (const [what, octets] of cases) {
        const a = assemble([seg({ data_coding: 0, short_message: octets })], OPTS);
        expect(a, what).to.include({ kind: 'reject', reason: 'undecodable' });
        if (a.kind !== 'reject') continue;
        expect(a.detail, what).to.match(/^data_coding 0x00: octets above 0x7F/);
        expect(JSON.parse(a.raw).parts[0].hex, what).to.equal(octets.toString('hex'));
      }
    });

    it('binary coding: one rejected-input record for the whole message', () => {
      const a = assemble([seg({ data_coding: 4, short_message: Buffer.from([1, 2, 3]) })], OPTS);
      expect(a).to.include({ kind: 'reject', reason: 'unsupported_coding' });
      if (a.kind === 'reject') expect(JSON.parse(a.raw).parts[0].hex).to.equal('010203');
    });

    it('the same bytes from the same sender give the same key; another sender or reference another', () => {
      const k = (over: Record<string, unknown>) => {
        const a = assemble([seg(over)], OPTS);
        return a.kind === 'inbound' ? a.inbound.dedupeKey : '';
      };
      expect(k({})).to.equal(k({}));
      expect(k({})).to.not.equal(k({ source_addr: '13900139000' }));
      expect(k({})).to.not.equal(k({ destination_addr: `${SVC}1` }));
      expect(k({ esm_class: 0x40, short_message: Buffer.concat([Buffer.from([5, 0, 3, 1, 1, 1]), ucs2('a')]) })).to.not.equal(
        k({ esm_class: 0x40, short_message: Buffer.concat([Buffer.from([5, 0, 3, 2, 1, 1]), ucs2('a')]) }),
      );
    });
  });

  describe('addresses', () => {
    it('E.164 for Chinese mobile numbers, digits as the user id', () => {
      expect(citizenFromAddress('13800138000').phone).to.equal('+8613800138000');
      expect(citizenFromAddress('8613800138000').phone).to.equal('+8613800138000');
      expect(citizenFromAddress('+8613800138000')).to.include({ channelUserId: '8613800138000', phone: '+8613800138000' });
      expect(citizenFromAddress('053112345678').phone).to.equal(null);
      expect(citizenFromAddress('4915112345678').phone).to.equal(null);
    });

    it('extension after the service number, with or without the country code', () => {
      expect(extensionOf(SVC, SVC)).to.equal('');
      expect(extensionOf(`${SVC}12`, SVC)).to.equal('12');
      expect(extensionOf(`86${SVC}3`, SVC)).to.equal('3');
      expect(extensionOf('12345', SVC)).to.equal(null);
    });
  });

  describe('receipts and redelivered segments', () => {
    it('parses stat and err case-insensitively', () => {
      expect(parseReceipt({}, 'ID:7f sub:001 dlvrd:000 Stat:undeliv Err:011')).to.deep.equal({ id: '7f', stat: 'UNDELIV', err: '011' });
    });

    it('offers hex/decimal spellings of an id', () => {
      expect(receiptIdVariants('255')).to.deep.equal(['ff', 'FF']);
      expect(receiptIdVariants('ff')).to.deep.equal(['255']);
      expect(receiptIdVariants('msg-1')).to.deep.equal([]);
    });

    it('remembers completed groups within the window, bounded per sender', () => {
      const group = groupOf(parts8()[0]!.meta);
      let done = recordDone([], group, parts8(), 1000, 60_000);
      expect(isDoneDuplicate(done, group, parts8()[1]!.meta, 2000, 60_000)).to.equal(true);
      expect(isDoneDuplicate(done, group, parts8()[1]!.meta, 1000 + 60_001, 60_000)).to.equal(false);
      for (let i = 0; i < 40; i++) done = recordDone(done, `g${i}`, parts8(), 1000 + i, 60_000);
      expect(done.length).to.be.at.most(16);
    });

    function parts8(): Segment[] {
      return udhSegments(ucs2(ZH), 3, 0xa7).map((b) => seg({ esm_class: 0x40, short_message: b }));
    }
  });
});
