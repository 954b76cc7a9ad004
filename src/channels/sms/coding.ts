import iconv from 'iconv-lite';
import { decodeGsm7 } from './gsm7.js';
import { wellFormed } from '../../normalize/text.js';

/**
 * Text encodings named by SMPP `data_coding`.
 *
 * Values 0x00–0x0F follow the SMPP 3.4 table (§5.2.19). Some SMSCs pass the GSM
 * TS 23.038 data coding scheme through for values above that (message class, MWI
 * groups), so those groups are read too. 0x0F is not assigned by SMPP; Chinese
 * gateways use it as in CMPP (Msg_Fmt 15, "含GB汉字"): GB-coded text, read here as
 * GB18030, the superset of GB2312 and GBK, so every valid GBK byte sequence decodes.
 */
export type Charset = 'gsm7' | 'ascii' | 'latin1' | 'ucs2' | 'gbk' | 'iso-8859-5' | 'iso-8859-8';

export type CodingInfo = { ok: true; charset: Charset } | { ok: false; detail: string };

const SMPP_CODINGS: Record<number, CodingInfo> = {
  0x00: { ok: true, charset: 'gsm7' },
  0x01: { ok: true, charset: 'ascii' },
  0x02: { ok: false, detail: 'octet unspecified (8-bit binary)' },
  0x03: { ok: true, charset: 'latin1' },
  0x04: { ok: false, detail: 'octet unspecified (8-bit binary)' },
  0x05: { ok: false, detail: 'JIS (X 0208-1990)' },
  0x06: { ok: true, charset: 'iso-8859-5' },
  0x07: { ok: true, charset: 'iso-8859-8' },
  0x08: { ok: true, charset: 'ucs2' },
  0x09: { ok: false, detail: 'pictogram encoding' },
  0x0a: { ok: false, detail: 'ISO-2022-JP (music codes)' },
  0x0b: { ok: false, detail: 'reserved' },
  0x0c: { ok: false, detail: 'reserved' },
  0x0d: { ok: false, detail: 'extended kanji JIS (X 0212-1990)' },
  0x0e: { ok: false, detail: 'KS C 5601' },
  0x0f: { ok: true, charset: 'gbk' },
};

function hex(dc: number): string {
  return `0x${dc.toString(16).padStart(2, '0')}`;
}

/** Which charset a `data_coding` value means, or why it cannot be read as text. */
export function codingInfo(dataCoding: number): CodingInfo {
  if (!Number.isInteger(dataCoding) || dataCoding < 0 || dataCoding > 0xff) {
    return { ok: false, detail: `data_coding ${String(dataCoding)} out of range` };
  }
  const known = SMPP_CODINGS[dataCoding];
  if (known) return known.ok ? known : { ok: false, detail: `data_coding ${hex(dataCoding)}: ${known.detail}` };
  const alphabet = (bits: number, what: string): CodingInfo => {
    if (bits === 0) return { ok: true, charset: 'gsm7' };
    if (bits === 2) return { ok: true, charset: 'ucs2' };
    return { ok: false, detail: `data_coding ${hex(dataCoding)}: ${what}` };
  };
  const group = dataCoding >> 4;
  // 23.038 general data coding (00xx xxxx, and 01xx xxxx "marked for automatic deletion").
  if (group <= 0x07) {
    if (dataCoding & 0x20) return { ok: false, detail: `data_coding ${hex(dataCoding)}: compressed text` };
    const bits = (dataCoding >> 2) & 0x03;
    return alphabet(bits, bits === 1 ? '8-bit data' : 'reserved alphabet');
  }
  // 1100/1101: message waiting indication, GSM 7-bit; 1110: the same, UCS2.
  if (group === 0x0c || group === 0x0d) return { ok: true, charset: 'gsm7' };
  if (group === 0x0e) return { ok: true, charset: 'ucs2' };
  // 1111: data coding / message class; bit 2 chooses GSM 7-bit or 8-bit data.
  if (group === 0x0f) return alphabet(dataCoding & 0x04 ? 1 : 0, '8-bit data');
  return { ok: false, detail: `data_coding ${hex(dataCoding)}: reserved` };
}

const utf16be = new TextDecoder('utf-16be');

/**
 * Decode bytes already joined across segments (a UTF-16 surrogate pair or a GBK
 * double-byte character may straddle a segment boundary, so never decode parts
 * one by one). Malformed sequences become U+FFFD rather than foreign characters.
 */
export function decodeBytes(charset: Charset, bytes: Buffer): string {
  switch (charset) {
    case 'gsm7':
      return decodeGsm7(bytes);
    case 'ascii': {
      // IA5 is 7-bit. An octet above 0x7F is not IA5; reading it as Latin-1 (of
      // which ASCII is the lower half) is the least surprising interpretation.
      return bytes.toString('latin1');
    }
    case 'latin1':
      return bytes.toString('latin1');
    case 'ucs2':
      // UCS-2 in SMPP is UTF-16BE in practice (emoji arrive as surrogate pairs).
      // TextDecoder replaces lone surrogates and a trailing odd byte with U+FFFD,
      // which keeps the text well-formed for JSON consumers.
      return utf16be.decode(bytes);
    case 'gbk':
      // iconv-lite maps four-byte GB18030 sequences past U+10FFFF to half a surrogate pair.
      return wellFormed(iconv.decode(bytes, 'gb18030'));
    case 'iso-8859-5':
    case 'iso-8859-8':
      return iconv.decode(bytes, charset);
  }
}
