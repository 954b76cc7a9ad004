import { expect } from 'chai';
import { decodeGsm7 } from './gsm7.js';
import { encodeOutgoing, GSM_PART, UCS2_PART } from './encode.js';

function udhOf(part: Buffer): number[] {
  return [...part.subarray(0, 6)];
}

describe('sms/encode', () => {
  it('short GSM text: one part, data_coding 0, no UDH', () => {
    const e = encodeOutgoing('Ticket 20261123-000042 {ok}', 7);
    expect(e.dataCoding).to.equal(0);
    expect(e.esmClass).to.equal(0);
    expect(e.parts).to.have.length(1);
    expect(decodeGsm7(e.parts[0]!)).to.equal('Ticket 20261123-000042 {ok}');
  });

  it('Chinese text: UCS-2 (UTF-16BE)', () => {
    const e = encodeOutgoing('【12345】您的诉求已受理', 1);
    expect(e.dataCoding).to.equal(8);
    expect(e.parts[0]!.equals(Buffer.from('【12345】您的诉求已受理', 'utf16le').swap16())).to.equal(true);
  });

  it('long GSM text: 153-septet parts with an 8-bit concatenation UDH', () => {
    const text = 'x'.repeat(400);
    const e = encodeOutgoing(text, 0x1a7);
    expect(e.esmClass).to.equal(0x40);
    expect(e.parts).to.have.length(3);
    e.parts.forEach((p, i) => expect(udhOf(p)).to.deep.equal([5, 0, 3, 0xa7, 3, i + 1]));
    expect(e.parts.map((p) => p.length - 6)).to.deep.equal([GSM_PART, GSM_PART, 400 - 2 * GSM_PART]);
    expect(e.parts.map((p) => decodeGsm7(p.subarray(6))).join('')).to.equal(text);
  });

  it('never splits an escape sequence between parts', () => {
    const text = `${'a'.repeat(152)}€${'b'.repeat(20)}`;
    const e = encodeOutgoing(text, 1);
    expect(e.parts[0]!.length - 6).to.equal(152);
    expect(e.parts.map((p) => decodeGsm7(p.subarray(6))).join('')).to.equal(text);
  });

  it('long UCS-2 text: 67-unit parts, a surrogate pair never split', () => {
    const text = `${'路'.repeat(66)}👍${'灯'.repeat(100)}`;
    const e = encodeOutgoing(text, 9);
    expect(e.dataCoding).to.equal(8);
    expect(e.parts[0]!.length - 6).to.equal(66 * 2);
    for (const p of e.parts) expect(p.length - 6).to.be.at.most(UCS2_PART * 2);
    const joined = Buffer.concat(e.parts.map((p) => p.subarray(6)));
    expect(joined.swap16().toString('utf16le')).to.equal(text);
  });

  it('boundaries: 160 septets and 70 UCS-2 units still fit one part', () => {
    expect(encodeOutgoing('a'.repeat(160), 1).parts).to.have.length(1);
    expect(encodeOutgoing('a'.repeat(161), 1).parts).to.have.length(2);
    expect(encodeOutgoing('路'.repeat(70), 1).parts).to.have.length(1);
    expect(encodeOutgoing('路'.repeat(71), 1).parts).to.have.length(2);
  });
});
