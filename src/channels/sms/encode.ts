import { encodeGsm7, GSM_ESCAPE } from './gsm7.js';

/**
 * Outgoing text → submit_sm payloads. GSM 7-bit (unpacked, data_coding 0) when every
 * character is in the GSM alphabet, otherwise UCS-2 (UTF-16BE, data_coding 8).
 * Long text is split with an 8-bit-reference concatenation UDH (05 00 03 ref total seq):
 * 153 septets or 67 UTF-16 units per part, never splitting an escape sequence or a
 * surrogate pair.
 */
export interface EncodedSms {
  dataCoding: 0 | 8;
  /** esm_class: 0x40 (UDHI) when the parts carry a UDH. */
  esmClass: number;
  /** Complete short_message octets per part, UDH included. */
  parts: Buffer[];
}

export const GSM_SINGLE = 160;
export const GSM_PART = 153;
export const UCS2_SINGLE = 70;
export const UCS2_PART = 67;
export const MAX_PARTS = 255;

export class TextTooLongError extends Error {
  constructor(readonly parts: number) {
    super(`text needs ${parts} SMS parts; at most ${MAX_PARTS} can be concatenated`);
  }
}

function udh8(ref: number, total: number, seq: number): Buffer {
  return Buffer.from([0x05, 0x00, 0x03, ref & 0xff, total, seq]);
}

function withUdh(chunks: Buffer[], ref: number): Buffer[] {
  if (chunks.length > MAX_PARTS) throw new TextTooLongError(chunks.length);
  return chunks.map((c, i) => Buffer.concat([udh8(ref, chunks.length, i + 1), c]));
}

function splitSeptets(septets: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  while (start < septets.length) {
    let end = Math.min(start + size, septets.length);
    // An escape and its extension character must travel in the same part (the
    // encoder only emits 0x1B as an escape prefix, never as an extension code).
    if (end < septets.length && septets[end - 1] === GSM_ESCAPE) end -= 1;
    out.push(septets.subarray(start, end));
    start = end;
  }
  return out;
}

function splitUtf16(units: Buffer, sizeUnits: number): Buffer[] {
  const out: Buffer[] = [];
  const size = sizeUnits * 2;
  let start = 0;
  while (start < units.length) {
    let end = Math.min(start + size, units.length);
    if (end < units.length) {
      const last = units.readUInt16BE(end - 2);
      // A high surrogate ending the part: move it to the next part with its pair.
      if (last >= 0xd800 && last <= 0xdbff) end -= 2;
    }
    out.push(units.subarray(start, end));
    start = end;
  }
  return out;
}

export function encodeOutgoing(text: string, ref: number): EncodedSms {
  const gsm = encodeGsm7(text);
  if (gsm) {
    if (gsm.length <= GSM_SINGLE) return { dataCoding: 0, esmClass: 0, parts: [gsm] };
    return { dataCoding: 0, esmClass: 0x40, parts: withUdh(splitSeptets(gsm, GSM_PART), ref) };
  }
  const ucs2 = Buffer.from(text, 'utf16le').swap16();
  if (ucs2.length <= UCS2_SINGLE * 2) return { dataCoding: 8, esmClass: 0, parts: [ucs2] };
  return { dataCoding: 8, esmClass: 0x40, parts: withUdh(splitUtf16(ucs2, UCS2_PART), ref) };
}
