/**
 * Phone numbers to E.164. Chinese mobile numbers arrive as `13800138000`,
 * `8613800138000`, `+86 138-0013-8000` or `008613800138000`; all become
 * `+8613800138000`. Anything else with enough digits keeps its digits with a `+`
 * when it came with a country code; otherwise null (not a phone number we can use).
 */
export function normalizePhone(input: string | null | undefined): string | null {
  if (!input) return null;
  const hadPlus = input.trim().startsWith('+');
  let d = input.replace(/[^\d]/g, '');
  if (d.startsWith('00')) d = d.slice(2);
  if (/^1[3-9]\d{9}$/.test(d)) return `+86${d}`;
  if (/^861[3-9]\d{9}$/.test(d)) return `+${d}`;
  if (hadPlus && d.length >= 8 && d.length <= 15) return `+${d}`;
  if (/^0\d{9,11}$/.test(d)) return `+86${d.slice(1)}`; // Chinese landline with trunk prefix
  return null;
}
