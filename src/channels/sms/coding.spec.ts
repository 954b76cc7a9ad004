import { expect } from 'chai';
import iconv from 'iconv-lite';
import { codingInfo, decodeBytes } from './coding.js';

const ZH = '小区停电了，请尽快处理';

function decode(dc: number, bytes: Buffer): string {
  const info = codingInfo(dc);
  if (!info.ok) throw new Error(info.detail);
  return decodeBytes(info.charset, bytes);
}

describe('sms/coding', () => {
  it('0: GSM 7-bit default alphabet', () => {
    expect(decode(0, Buffer.from([0x48, 0x69, 0x11, 0x1b, 0x65]))).to.equal('Hi_€');
  });

  it('1: IA5 is ASCII, not the GSM table (the smpp package gets _ { } wrong)', () => {
    expect(decode(1, Buffer.from('abc_{}[]\\^~|@$', 'latin1'))).to.equal('abc_{}[]\\^~|@$');
  });

  it('3: Latin-1', () => {
    expect(decode(3, Buffer.from('Grüße, café', 'latin1'))).to.equal('Grüße, café');
  });

  it('8: UCS-2 / UTF-16BE with Chinese and emoji', () => {
    const text = `${ZH}👍`;
    expect(decode(8, Buffer.from(text, 'utf16le').swap16())).to.equal(text);
  });

  it('8: a lone surrogate becomes U+FFFD, never a broken string', () => {
    const bytes = Buffer.from('路灯👍', 'utf16le').swap16().subarray(0, 6);
    expect(decode(8, bytes)).to.equal('路灯\ufffd');
  });

  it('15: GB-coded Chinese (GBK and GB2312) via iconv-lite', () => {
    expect(decode(15, iconv.encode(ZH, 'gbk'))).to.equal(ZH);
    expect(decode(15, iconv.encode('噪音扰民', 'gb2312'))).to.equal('噪音扰民');
    // A GBK-only character outside GB2312.
    expect(decode(15, iconv.encode('堃', 'gbk'))).to.equal('堃');
  });

  it('6 and 7: ISO-8859-5 and ISO-8859-8', () => {
    expect(decode(6, iconv.encode('Привет', 'iso-8859-5'))).to.equal('Привет');
    expect(decode(7, iconv.encode('שלום', 'iso-8859-8'))).to.equal('שלום');
  });

  it('binary and unassigned codings are refused with a reason', () => {
    for (const dc of [2, 4, 5, 9, 0x0a, 0x0d, 0x0e, 0x14, 0x24, 0xf4, 0x80]) {
      const info = codingInfo(dc);
      expect(info.ok, `data_coding ${dc}`).to.equal(false);
      if (!info.ok) expect(info.detail).to.match(/^data_coding 0x/);
    }
  });

  it('GSM 23.038 coding groups passed through by some SMSCs', () => {
    expect(codingInfo(0x11)).to.deep.equal({ ok: true, charset: 'gsm7' });
    expect(codingInfo(0x18)).to.deep.equal({ ok: true, charset: 'ucs2' });
    expect(codingInfo(0xf0)).to.deep.equal({ ok: true, charset: 'gsm7' });
    expect(codingInfo(0xe0)).to.deep.equal({ ok: true, charset: 'ucs2' });
  });
});
