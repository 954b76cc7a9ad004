import fc from 'fast-check';

/**
 * Generators shared by the JSON channels (Weibo, Telegram, app API): JSON text
 * written by hand, so that it can hold what JSON.stringify never writes (bare
 * integers beyond 2^53, escapes of lone surrogates, duplicate keys, odd spacing).
 */

/** A JSON value as text. */
export type JsonText = string;

export const ws = fc.constantFrom('', '', '', ' ', '\n', '\t', '\r\n  ');

/** Well-formed text, with the characters that matter in JSON strings. */
export const jsonSafeText = fc.oneof(
  { weight: 4, arbitrary: fc.string({ unit: 'binary', maxLength: 60 }) },
  { weight: 2, arbitrary: fc.string({ maxLength: 60 }) },
  { weight: 1, arbitrary: fc.constantFrom('', ' ', '"', '\\', '\u0000', '\u2028', '\ufeff', '😀', '路灯坏了', '\ud83d\ude00', '/start', ' \n ') },
);

/** JSON string literal of well-formed text, sometimes with every character escaped. */
export function stringLiteral(s: string, escapeAll = false): JsonText {
  if (!escapeAll) return JSON.stringify(s);
  let out = '"';
  for (let i = 0; i < s.length; i++) out += `\\u${s.charCodeAt(i).toString(16).padStart(4, '0')}`;
  return `${out}"`;
}
export const stringText = fc.tuple(jsonSafeText, fc.boolean()).map(([s, e]) => stringLiteral(s, e));

/** A JSON string holding a lone surrogate through an escape: legal JSON, ill-formed UTF-16. */
export const loneSurrogateText = fc
  .tuple(jsonSafeText, fc.integer({ min: 0xd800, max: 0xdfff }), jsonSafeText)
  .map(([a, u, b]) => `${JSON.stringify(a).slice(0, -1)}\\u${u.toString(16)}${JSON.stringify(b).slice(1)}`);

/** Integers as JSON text, small to far beyond int64, negative, with exponents and fractions. */
export const bigIntText = fc.oneof(
  fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map(String),
  fc.bigInt({ min: -(1n << 63n), max: 1n << 70n }).map(String),
  fc.integer().map(String),
  fc.constantFrom('0', '-0', '9007199254740993', '18446744073709551616', '1e3', '1.5', '1E+21', '-1', '123456789012345678901234'),
);

export const numberText = fc.oneof(bigIntText, fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => JSON.stringify(d)));

/** Any JSON value as text (as JSON.stringify writes it). */
export const anyJsonText = fc.json({ maxDepth: 3 });

/** Object text from [key, valueText] pairs, in the given order, with random spacing; duplicates are kept. */
export function objectText(entries: [string, JsonText][], spaces: string[] = []): JsonText {
  const sp = (i: number) => spaces[i % Math.max(1, spaces.length)] ?? '';
  return `{${entries.map(([k, v], i) => `${sp(i)}${JSON.stringify(k)}${sp(i + 1)}:${sp(i + 2)}${v}${sp(i + 3)}`).join(',')}}`;
}

/** Break JSON text: cut it, or splice in a stray character. */
export const mutation = fc.record({
  kind: fc.oneof({ weight: 12, arbitrary: fc.constant('none') }, { weight: 1, arbitrary: fc.constantFrom('cut', 'insert', 'drop') }),
  at: fc.nat(),
  ch: fc.constantFrom('"', '{', '}', ',', ':', '\\', '[', ']', 'x', '0', '-', ' '),
});
export function mutate(text: JsonText, m: { kind: string; at: number; ch: string }): JsonText {
  if (m.kind === 'none' || text.length === 0) return text;
  const i = m.at % text.length;
  if (m.kind === 'cut') return text.slice(0, i);
  if (m.kind === 'insert') return text.slice(0, i) + m.ch + text.slice(i);
  return text.slice(0, i) + text.slice(i + 1);
}

/** Mostly `valid`, sometimes `invalid`: enough inputs get deep into the parser. */
export function mostly<T>(valid: fc.Arbitrary<T>, invalid: fc.Arbitrary<T>, weight = 6): fc.Arbitrary<T> {
  return fc.oneof({ weight, arbitrary: valid }, { weight: 1, arbitrary: invalid });
}

/** Present with probability `p`, else undefined (for optional members that should not all appear at once). */
export function sometimes<T>(arb: fc.Arbitrary<T>, p = 1 / 6): fc.Arbitrary<T | undefined> {
  const w = Math.round(p * 100);
  return fc.oneof({ weight: 100 - w, arbitrary: fc.constant(undefined) }, { weight: w, arbitrary: arb });
}

/** Object text from a record whose undefined members are left out. */
export function objectOf(o: Record<string, JsonText | undefined>): JsonText {
  return objectText(Object.entries(o).filter((e): e is [string, JsonText] => e[1] !== undefined));
}

/** True when some string (key or value) in a parsed JSON value holds a lone surrogate. */
export function holdsLoneSurrogate(v: unknown): boolean {
  if (typeof v === 'string') return /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(v);
  if (Array.isArray(v)) return v.some(holdsLoneSurrogate);
  if (v && typeof v === 'object') return Object.entries(v).some(([k, x]) => holdsLoneSurrogate(k) || holdsLoneSurrogate(x));
  return false;
}
