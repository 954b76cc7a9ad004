/**
 * "Same matter" for repeat detection: the Dice coefficient of character bigrams
 * over the content with punctuation and blanks removed. Works for Chinese (no
 * word boundaries) and for alphabetic languages alike, and is cheap enough to
 * compare a new message with a citizen's recent tickets inside the intake.
 */
export function bigrams(text: string): Map<string, number> {
  const s = Array.from(text.toLowerCase().replace(/[\p{P}\p{S}\s]+/gu, ''));
  const grams = new Map<string, number>();
  if (s.length === 1) grams.set(s[0]!, 1);
  for (let i = 0; i + 1 < s.length; i++) {
    const g = s[i]! + s[i + 1]!;
    grams.set(g, (grams.get(g) ?? 0) + 1);
  }
  return grams;
}

export function similarity(a: string, b: string): number {
  return dice(bigrams(a), bigrams(b));
}

/** Dice coefficient of two bigram multisets (compute a text's bigrams once, compare many). */
export function dice(A: Map<string, number>, B: Map<string, number>): number {
  let sizeA = 0;
  let sizeB = 0;
  for (const n of A.values()) sizeA += n;
  for (const n of B.values()) sizeB += n;
  if (sizeA === 0 || sizeB === 0) return 0;
  let common = 0;
  for (const [g, n] of A) common += Math.min(n, B.get(g) ?? 0);
  return (2 * common) / (sizeA + sizeB);
}

/** Threshold above which two messages of the same citizen are the same matter. */
export const SAME_MATTER = 0.6;
