import { expect } from 'chai';
import iconv from 'iconv-lite';
import { decodeGsm7, encodeGsm7, gsm7Length, readPackedGsm7, type PackedRead } from './gsm7.js';
import { fillBitsAfter, packGsm7, packSeptets } from '../../../test/support/smsc.js';

const one = (octets: Buffer, udhOctets = 0): PackedRead => readPackedGsm7([{ octets, udhOctets }]);

describe('sms/gsm7', () => {
  it('decodes the default alphabet, unpacked one septet per octet', () => {
    expect(decodeGsm7(Buffer.from('Hello @ $ _ 123', 'latin1').map((b) => ({ 0x40: 0x00, 0x24: 0x02, 0x5f: 0x11 })[b] ?? b))).to.equal(
      'Hello @ $ _ 123',
    );
    expect(decodeGsm7(Buffer.from([0x00, 0x01, 0x02, 0x03, 0x10, 0x1f, 0x5b, 0x7f]))).to.equal('@£$¥ΔÉÄà');
  });

  it('decodes the extension table after the escape septet', () => {
    const bytes = Buffer.from([0x1b, 0x28, 0x1b, 0x29, 0x1b, 0x3c, 0x1b, 0x3e, 0x1b, 0x2f, 0x1b, 0x14, 0x1b, 0x3d, 0x1b, 0x40, 0x1b, 0x65]);
    expect(decodeGsm7(bytes)).to.equal('{}[]\\^~|€');
  });

  it('shows an unknown extension code as the base character and a trailing escape as a space', () => {
    expect(decodeGsm7(Buffer.from([0x1b, 0x41]))).to.equal('A');
    expect(decodeGsm7(Buffer.from([0x41, 0x1b]))).to.equal('A ');
  });

  it('round-trips every encodable character and counts extension characters twice', () => {
    const text = '@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !"#¤%&\'()*+,-./0123456789:;<=>?¡ABCXYZÄÖÑÜ§¿abcxyzäöñüà{}[]~|^€\\';
    const enc = encodeGsm7(text);
    expect(enc).to.not.equal(null);
    expect(decodeGsm7(enc!)).to.equal(text);
    expect(gsm7Length('a€')).to.equal(3);
  });

  it('refuses characters outside the alphabet', () => {
    expect(encodeGsm7('停电')).to.equal(null);
    expect(gsm7Length('ok 👍')).to.equal(null);
  });

  describe('packed septets under data_coding 0', () => {
    it('packed "Hello world" (seen in the wild as H2ñùÑ§r6Θ) reads as Hello world', () => {
      const octets = Buffer.from('c8329bfd06dddf723619', 'hex');
      expect(packGsm7('Hello world').equals(octets)).to.equal(true);
      // What reading them as unpacked septets gave: the top bits dropped.
      expect(decodeGsm7(octets)).to.equal('H2ñùÑ§r6Θ');
      expect(one(octets)).to.deep.equal({ ok: true, text: 'Hello world', septets: 11 });
    });

    it('extension-table characters, digits and punctuation', () => {
      const text = 'Water pipe burst {No. 5} [Main St.] ~50€, call 13800138000!';
      expect(one(packGsm7(text))).to.deep.include({ ok: true, text });
    });

    it('eight septets fill seven octets: a zero or CR septet there is padding', () => {
      // 7 characters leave 7 spare bits in 7 octets, which unpack as one more septet.
      const text = 'Streets';
      const octets = packGsm7(text);
      expect(octets.length).to.equal(7);
      expect(one(octets)).to.deep.include({ ok: true, text });
      const withCr = packGsm7(`${text}\r`);
      expect(withCr.length).to.equal(7);
      expect(one(withCr)).to.deep.include({ ok: true, text });
      // Eight real characters in seven octets are all kept.
      expect(one(packGsm7('Lamppost'))).to.deep.include({ ok: true, text: 'Lamppost' });
    });

    it('segments after a UDH: fill bits, then each segment unpacked on its own', () => {
      // A 6-octet UDH (05 00 03 ref total seq) needs 1 fill bit, a 7-octet one none.
      expect(fillBitsAfter(6)).to.equal(1);
      expect(fillBitsAfter(7)).to.equal(0);
      const first = 'Streetlight at Jingshi Road 5 is broken ';
      const second = 'since Monday, please repair it {urgent}';
      const r = readPackedGsm7([
        { octets: packGsm7(first, 1), udhOctets: 6 },
        { octets: packGsm7(second, 1), udhOctets: 6 },
      ]);
      expect(r).to.deep.include({ ok: true, text: first + second });
      expect(readPackedGsm7([{ octets: packGsm7(second, 0), udhOctets: 7 }])).to.deep.include({ ok: true, text: second });
    });

    it('refuses octets that are not packed text, saying why', () => {
      const refused: [string, Buffer, RegExp][] = [
        ['octets 0x80-0x83', Buffer.from([0x80, 0x81, 0x82, 0x83]), /not zero/],
        ['Latin-1 text', Buffer.from('Straße kaputt, café geschlossen', 'latin1'), /./],
        ['GBK text', iconv.encode('小区停电了，请尽快处理', 'gbk'), /./],
        ['UTF-8 text', Buffer.from('路灯坏了 Grüße', 'utf8'), /./],
        ['too short to tell', packGsm7('OK'), /too few/],
        // H e l l o ESC A w o r l d: 0x41 is not in the extension table.
        ['an escape without an extension character', packSeptets([0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x1b, 0x41, 0x77, 0x6f, 0x72, 0x6c, 0x64]), /escape/],
      ];
      for (const [what, octets, why] of refused) {
        const r = one(octets);
        expect(r.ok, what).to.equal(false);
        if (!r.ok) expect(r.detail, what).to.match(why);
      }
      // Nonzero fill bits after a UDH.
      const filled = packGsm7('Hello world', 1);
      filled[0]! |= 1;
      expect(one(filled, 6)).to.deep.include({ ok: false });
      // Mostly Greek and accented letters: not recognised (a documented limit).
      expect(one(packGsm7('ΔΦΓΛΩΠΨΣΘΞ ÆæßÉ')).ok).to.equal(false);
    });
  });
});
