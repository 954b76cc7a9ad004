import { expect } from 'chai';
import { createCipheriv, randomBytes } from 'node:crypto';
import { WechatCrypto, pkcs7Pad, pkcs7Unpad, signatureMatches, wechatSignature } from './crypto.js';

// Official WXBizMsgCrypt sample vector (the same values ship with the samples in every language).
const TOKEN = 'QDG6eK';
const APP_ID = 'wx5823bf96d3bd56c7';
const AES_KEY = 'jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C';
const TIMESTAMP = '1409659813';
const NONCE = '1372623149';
const MSG_SIGNATURE = '477715d11cdb4164915debcba66cb864d751f3e6';
const ENCRYPT =
  'RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q==';

describe('wechat crypto', () => {
  it('computes msg_signature of the official sample', () => {
    expect(wechatSignature(TOKEN, TIMESTAMP, NONCE, ENCRYPT)).to.equal(MSG_SIGNATURE);
    expect(signatureMatches(MSG_SIGNATURE, MSG_SIGNATURE.toUpperCase())).to.equal(true);
    expect(signatureMatches(MSG_SIGNATURE, MSG_SIGNATURE.slice(1))).to.equal(false);
    expect(signatureMatches(MSG_SIGNATURE, undefined)).to.equal(false);
  });

  it('decrypts the official sample and checks the AppID', () => {
    const c = new WechatCrypto(AES_KEY, APP_ID);
    const { message, appId } = c.decrypt(ENCRYPT);
    expect(appId).to.equal(APP_ID);
    expect(message).to.match(/^<xml>/);
    expect(message).to.contain('<MsgType><![CDATA[text]]></MsgType>');
    expect(() => new WechatCrypto(AES_KEY, 'wx_other').decrypt(ENCRYPT)).to.throw(/AppID/);
  });

  it('round-trips every pad length 1..32, including pads above 16', () => {
    const c = new WechatCrypto(AES_KEY, APP_ID);
    for (let n = 0; n < 40; n++) {
      const xml = `<xml><Content><![CDATA[${'测'.repeat(n % 7)}${'x'.repeat(n)}]]></Content></xml>`;
      const enc = c.encrypt(xml);
      expect(c.decrypt(enc).message).to.equal(xml);
    }
  });

  it('pads PKCS#7 to 32-byte blocks', () => {
    expect(pkcs7Pad(Buffer.alloc(0)).length).to.equal(32);
    expect(pkcs7Pad(Buffer.alloc(31)).at(-1)).to.equal(1);
    expect(pkcs7Pad(Buffer.alloc(15)).at(-1)).to.equal(17);
    expect(pkcs7Unpad(pkcs7Pad(Buffer.from('abc'))).toString()).to.equal('abc');
    expect(() => pkcs7Unpad(Buffer.alloc(32, 33))).to.throw(/padding/);
    expect(() => pkcs7Unpad(Buffer.from([...Buffer.alloc(30, 0), 1, 2]))).to.throw(/padding/);
  });

  it('rejects a wrong key and garbage ciphertext', () => {
    const other = new WechatCrypto('abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG', APP_ID);
    expect(() => other.decrypt(ENCRYPT)).to.throw();
    expect(() => new WechatCrypto(AES_KEY, APP_ID).decrypt('not base64 !')).to.throw();
    expect(() => new WechatCrypto('short', APP_ID)).to.throw(/43/);
  });

  it('rejects a message length that runs past the plaintext', () => {
    const key = Buffer.from(`${AES_KEY}=`, 'base64');
    const len = Buffer.alloc(4);
    len.writeUInt32BE(1000);
    const plain = pkcs7Pad(Buffer.concat([randomBytes(16), len, Buffer.from('<xml/>'), Buffer.from(APP_ID)]));
    const cipher = createCipheriv('aes-256-cbc', key, key.subarray(0, 16));
    cipher.setAutoPadding(false);
    const enc = Buffer.concat([cipher.update(plain), cipher.final()]).toString('base64');
    expect(() => new WechatCrypto(AES_KEY, APP_ID).decrypt(enc)).to.throw(/length/);
  });
});
