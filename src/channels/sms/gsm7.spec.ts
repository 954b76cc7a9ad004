import { expect } from 'chai';
import { decodeGsm7, encodeGsm7, gsm7Length } from './gsm7.js';

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
});
