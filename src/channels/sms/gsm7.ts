/**
 * GSM 03.38 / 3GPP TS 23.038 default 7-bit alphabet and its extension table.
 *
 * Over SMPP, data_coding 0 carries the alphabet **unpacked**: one septet per octet
 * (SMPP 3.4 §5.2.19). Some SMSCs forward the air-interface form instead, septets
 * packed eight to seven octets (23.038 §6.1.2.1.1); `readPackedGsm7` recognises
 * that where it can be told apart. The extension table is reached by the escape
 * septet 0x1B followed by the character's code.
 */

// prettier-ignore
const BASIC: readonly string[] = [
  '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å',
  'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u001b', 'Æ', 'æ', 'ß', 'É',
  ' ', '!', '"', '#', '¤', '%', '&', "'", '(', ')', '*', '+', ',', '-', '.', '/',
  '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?',
  '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O',
  'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§',
  '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o',
  'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à',
];

const EXTENSION: ReadonlyMap<number, string> = new Map([
  [0x0a, '\f'],
  [0x14, '^'],
  [0x28, '{'],
  [0x29, '}'],
  [0x2f, '\\'],
  [0x3c, '['],
  [0x3d, '~'],
  [0x3e, ']'],
  [0x40, '|'],
  [0x65, '€'],
]);

export const GSM_ESCAPE = 0x1b;

const ENCODE_BASIC = new Map<string, number>();
BASIC.forEach((ch, code) => {
  if (code !== GSM_ESCAPE) ENCODE_BASIC.set(ch, code);
});
const ENCODE_EXTENSION = new Map<string, number>();
for (const [code, ch] of EXTENSION) ENCODE_EXTENSION.set(ch, code);

/**
 * Decode unpacked septets, one per octet. The top bit is ignored here: an octet
 * with it set is not an unpacked septet at all, and callers holding such input
 * decide first what it is (see `readPackedGsm7`).
 */
export function decodeGsm7(bytes: Uint8Array): string {
  let out = '';
  for (let i = 0; i < bytes.length; i++) {
    const code = bytes[i]! & 0x7f;
    if (code !== GSM_ESCAPE) {
      out += BASIC[code];
      continue;
    }
    const next = bytes[i + 1];
    if (next === undefined) {
      // A lone escape at the very end has no character; 23.038 says to show a space.
      out += ' ';
      break;
    }
    i++;
    const ext = EXTENSION.get(next & 0x7f);
    // 23.038 §6.2.1.1: a code missing from the extension table is shown as the
    // character of the default table at that position.
    out += ext ?? BASIC[next & 0x7f];
  }
  return out;
}

/** Number of septets `text` needs in the GSM alphabet, or null when a character is not in it. */
export function gsm7Length(text: string): number | null {
  let n = 0;
  for (const ch of text) {
    if (ENCODE_BASIC.has(ch)) n += 1;
    else if (ENCODE_EXTENSION.has(ch)) n += 2;
    else return null;
  }
  return n;
}

/** Encode as unpacked septets, or null when some character is not in the GSM alphabet. */
export function encodeGsm7(text: string): Buffer | null {
  const out: number[] = [];
  for (const ch of text) {
    const basic = ENCODE_BASIC.get(ch);
    if (basic !== undefined) {
      out.push(basic);
      continue;
    }
    const ext = ENCODE_EXTENSION.get(ch);
    if (ext === undefined) return null;
    out.push(GSM_ESCAPE, ext);
  }
  return Buffer.from(out);
}

// ---------------------------------------------------------------------------
// Packed septets sent where SMPP expects unpacked ones

/** A piece of packed user data: its octets, and how many UDH octets preceded them in the same user data. */
export interface PackedPiece {
  octets: Uint8Array;
  udhOctets: number;
}

export type PackedRead = { ok: true; text: string; septets: number } | { ok: false; detail: string };

/** Fewer septets than this are never taken for packed text: too little to tell it from other bytes. */
export const PACKED_MIN_SEPTETS = 4;
/** Below this many characters every one must be ordinary; from it on, PACKED_MIN_ORDINARY of them. */
export const PACKED_STRICT_BELOW = 24;
export const PACKED_MIN_ORDINARY = 0.9;

/** Septets of ASCII letters, digits, space, CR, LF and ASCII punctuation: what plain text mostly consists of. */
const ORDINARY = new Set<number>();
for (const ch of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 \r\n!"#%&\'()*+,-./:;<=>?@$_') ORDINARY.add(ENCODE_BASIC.get(ch)!);

/** The value of `count` bits starting at bit `pos`, low bit first (23.038 packs septets LSB first). */
function bitsAt(octets: Uint8Array, pos: number, count: number): number {
  let v = 0;
  for (let b = 0; b < count; b++, pos++) if (octets[pos >> 3]! & (1 << (pos & 7))) v |= 1 << b;
  return v;
}

/** Unpack one piece, or say why its bits cannot be packed septets. */
function unpackPiece(piece: PackedPiece): { ok: true; septets: number[] } | { ok: false; detail: string } {
  const { octets, udhOctets } = piece;
  // 23.040 §9.2.3.24: fill bits after the UDH make the first character start on a septet boundary.
  const fill = (7 - ((udhOctets * 8) % 7)) % 7;
  const available = octets.length * 8 - fill;
  if (available < 7) return { ok: false, detail: `${octets.length} octet(s) hold no septet` };
  if (fill > 0 && bitsAt(octets, 0, fill) !== 0) return { ok: false, detail: 'fill bits after the UDH are not zero' };
  const count = Math.floor(available / 7);
  const spare = available - count * 7;
  // An encoder leaves the bits after the last septet zero.
  if (spare > 0 && bitsAt(octets, fill + count * 7, spare) !== 0) return { ok: false, detail: 'bits after the last septet are not zero' };
  const septets: number[] = [];
  for (let i = 0; i < count; i++) septets.push(bitsAt(octets, fill + i * 7, 7));
  // When the septets fill the octets exactly, the last one may be padding: CR as
  // 23.038 §6.1.2.3.1 prescribes, or zero ('@') as many encoders write it.
  const last = septets[septets.length - 1];
  if (spare === 0 && (last === 0x00 || last === 0x0d)) septets.pop();
  return { ok: true, septets };
}

/**
 * Read user data as GSM 7-bit septets **packed** eight to seven octets, the way
 * the air interface carries them (23.038 §6.1.2.1.1), when an SMSC or sending
 * system forwards them under data_coding 0 although SMPP expects one septet per
 * octet. Pieces are the segments of one message; each was packed on its own.
 *
 * The call is made only for input that cannot be unpacked septets (an octet has
 * its top bit set). It answers text only when the bits are unambiguously packed
 * septets, because any octets unpack to *some* septets:
 *  - the fill bits after a UDH and the bits after the last septet are zero;
 *  - every escape is followed by a character of the extension table;
 *  - there are at least PACKED_MIN_SEPTETS septets, and the characters are
 *    letters, digits, space, CR/LF or ASCII punctuation: all of them below
 *    PACKED_STRICT_BELOW characters, at least PACKED_MIN_ORDINARY from there on.
 * Limits: very short messages, and text made mostly of the alphabet's accented
 * and Greek letters, are not recognised and are refused with the reason; so is
 * an 8-bit charset (Latin-1, GBK, UTF-8…) sent under data_coding 0, which in
 * samples of 20,000 each never passed. Uniformly random octets pass by chance in
 * about 0.1% of cases over lengths 1–140, but up to 5% at exactly 7 octets, where
 * eight septets fill the octets and leave no spare bits to check.
 */
export function readPackedGsm7(pieces: PackedPiece[]): PackedRead {
  const septets: number[] = [];
  for (const [i, piece] of pieces.entries()) {
    const u = unpackPiece(piece);
    if (!u.ok) return { ok: false, detail: pieces.length > 1 ? `segment ${i + 1}: ${u.detail}` : u.detail };
    septets.push(...u.septets);
  }
  if (septets.length < PACKED_MIN_SEPTETS) return { ok: false, detail: `${septets.length} septet(s) are too few to tell packed text from other bytes` };
  let out = '';
  let ordinary = 0;
  let chars = 0;
  for (let i = 0; i < septets.length; i++) {
    const code = septets[i]!;
    chars++;
    if (code === GSM_ESCAPE) {
      const ext = EXTENSION.get(septets[i + 1] ?? -1);
      if (ext === undefined) return { ok: false, detail: `escape septet at character ${chars} is not followed by an extension-table character` };
      out += ext;
      ordinary++;
      i++;
      continue;
    }
    out += BASIC[code];
    if (ORDINARY.has(code)) ordinary++;
  }
  const needed = chars < PACKED_STRICT_BELOW ? chars : Math.ceil(chars * PACKED_MIN_ORDINARY);
  if (ordinary < needed) return { ok: false, detail: `only ${ordinary} of ${chars} unpacked characters are letters, digits or punctuation` };
  return { ok: true, text: out, septets: septets.length };
}
