/**
 * GSM 03.38 / 3GPP TS 23.038 default 7-bit alphabet and its extension table.
 *
 * Over SMPP, data_coding 0 carries the alphabet **unpacked**: one septet per octet
 * (SMPP 3.4 §5.2.19), so no bit packing happens here. The extension table is
 * reached by the escape septet 0x1B followed by the character's code.
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

/** Decode unpacked septets (one per octet; the top bit is ignored). */
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
