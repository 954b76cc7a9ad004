import { createCipheriv, createDecipheriv, createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { GatewayError } from '../../errors.js';

/**
 * WeChat official-account message signatures and safe-mode (安全模式) encryption.
 *
 * Ported from the reference implementation `node-webot/wechat-crypto`
 * (lib/msg_crypto.js) and the official WXBizMsgCrypt samples:
 * - key = base64decode(EncodingAESKey + '='), 32 bytes → AES-256-CBC, iv = key[0..16)
 * - plaintext = random(16) ‖ uint32 BE length ‖ xml (UTF-8) ‖ appid
 * - PKCS#7 padding to a **32-byte** block. Node's built-in padding works on the
 *   16-byte AES block and rejects pad values above 16, so auto-padding is off and
 *   the padding is added and stripped here.
 */

const BLOCK = 32;

/** sha1 hex of the values sorted as strings and concatenated: both `signature` and `msg_signature`. */
export function wechatSignature(...values: string[]): string {
  return createHash('sha1').update([...values].sort().join(''), 'utf8').digest('hex');
}

/** Constant-time comparison of two hex signatures (lengths may differ). */
export function signatureMatches(expected: string, given: string | undefined | null): boolean {
  if (typeof given !== 'string') return false;
  const a = Buffer.from(expected.toLowerCase(), 'utf8');
  const b = Buffer.from(given.toLowerCase(), 'utf8');
  return a.length === b.length && timingSafeEqual(a, b);
}

export function pkcs7Pad(data: Buffer, block = BLOCK): Buffer {
  const n = block - (data.length % block);
  return Buffer.concat([data, Buffer.alloc(n, n)]);
}

export function pkcs7Unpad(data: Buffer, block = BLOCK): Buffer {
  const n = data.length > 0 ? data[data.length - 1]! : 0;
  // Strict: a pad byte outside 1..block, or inconsistent pad bytes, means a wrong
  // key or a corrupted message (the reference decoder silently treats it as 0).
  if (n < 1 || n > block || n > data.length) throw cryptoError('bad PKCS#7 padding');
  for (let i = data.length - n; i < data.length; i++) if (data[i] !== n) throw cryptoError('bad PKCS#7 padding');
  return data.subarray(0, data.length - n);
}

function cryptoError(message: string): GatewayError {
  return new GatewayError('INPUT_INVALID', `WeChat safe mode: ${message}`, { transient: false });
}

export interface Decrypted {
  message: string;
  appId: string;
}

export class WechatCrypto {
  private readonly key: Buffer;
  private readonly iv: Buffer;

  constructor(
    encodingAESKey: string,
    private readonly appId: string,
  ) {
    const key = Buffer.from(`${encodingAESKey}=`, 'base64');
    if (encodingAESKey.length !== 43 || key.length !== 32) {
      throw new GatewayError('CONFIG_INVALID', 'WECHAT_ENCODING_AES_KEY must be the 43-character EncodingAESKey (32 bytes once decoded)');
    }
    this.key = key;
    this.iv = key.subarray(0, 16);
  }

  /** Base64 ciphertext of `xml` for this account, as WeChat expects in `<Encrypt>`. */
  encrypt(xml: string, random: Buffer = randomBytes(16)): string {
    const msg = Buffer.from(xml, 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32BE(msg.length, 0);
    const plain = pkcs7Pad(Buffer.concat([random.subarray(0, 16), len, msg, Buffer.from(this.appId, 'utf8')]));
    const cipher = createCipheriv('aes-256-cbc', this.key, this.iv);
    cipher.setAutoPadding(false);
    return Buffer.concat([cipher.update(plain), cipher.final()]).toString('base64');
  }

  /** Decrypt `<Encrypt>`; throws INPUT_INVALID on a wrong key, bad padding, bad length or another AppID. */
  decrypt(encrypted: string): Decrypted {
    const data = Buffer.from(encrypted, 'base64');
    if (data.length === 0 || data.length % 16 !== 0) throw cryptoError('ciphertext is not a whole number of AES blocks');
    let plain: Buffer;
    try {
      const decipher = createDecipheriv('aes-256-cbc', this.key, this.iv);
      decipher.setAutoPadding(false);
      plain = Buffer.concat([decipher.update(data), decipher.final()]);
    } catch (err) {
      throw new GatewayError('INPUT_INVALID', 'WeChat safe mode: cannot decrypt', { transient: false, cause: err });
    }
    const body = pkcs7Unpad(plain);
    if (body.length < 20) throw cryptoError('plaintext too short');
    const len = body.readUInt32BE(16);
    if (20 + len > body.length) throw cryptoError('message length exceeds plaintext');
    const message = body.subarray(20, 20 + len).toString('utf8');
    const appId = body.subarray(20 + len).toString('utf8');
    if (appId !== this.appId) {
      throw new GatewayError('AUTH_FAILED', 'WeChat safe mode: AppID in the message does not match WECHAT_APP_ID', {
        transient: false,
        detail: { appId },
      });
    }
    return { message, appId };
  }
}
