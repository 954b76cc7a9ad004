/**
 * A BCP 47 tag for the content, good enough to route a ticket to the right
 * language seat: the hotline has seats for Mandarin and a few foreign languages,
 * so the script decides, and Latin text is told apart by common function words.
 */
const SCRIPTS: [RegExp, string][] = [
  [/[\u3040-\u30ff]/g, 'ja'],
  [/[\uac00-\ud7af\u1100-\u11ff]/g, 'ko'],
  [/[\u4e00-\u9fff\u3400-\u4dbf\uf900-\ufaff]/g, 'zh'],
  [/[\u0400-\u04ff]/g, 'ru'],
  [/[\u0600-\u06ff]/g, 'ar'],
  [/[\u0e00-\u0e7f]/g, 'th'],
  [/[\u0900-\u097f]/g, 'hi'],
];

const LATIN_WORDS: [string, RegExp][] = [
  ['en', /\b(the|is|are|and|of|to|in|my|please|not|there|this|it|at|on|street)\b/g],
  ['fr', /\b(le|la|les|est|et|des|une|dans|pour|pas|rue|bonjour)\b/g],
  ['de', /\b(der|die|das|ist|und|nicht|ein|eine|bitte|straße|strasse)\b/g],
  ['es', /\b(el|los|las|es|y|una|por|para|calle|hola|está)\b/g],
  ['ru', /\b(privet)\b/g],
];

export function detectLanguage(text: string): string {
  if (!text.trim()) return 'und';
  let best = 'und';
  let bestCount = 0;
  for (const [re, tag] of SCRIPTS) {
    const n = text.match(re)?.length ?? 0;
    // Japanese text mixes kana with kanji: any kana decides for Japanese.
    if (tag === 'ja' && n > 0) return 'ja';
    if (n > bestCount) {
      best = tag;
      bestCount = n;
    }
  }
  const latin = text.match(/[A-Za-z\u00c0-\u024f]/g)?.length ?? 0;
  if (bestCount > 0 && bestCount * 2 >= latin / 3) return best;
  if (latin === 0) return best;
  const lower = text.toLowerCase();
  let lang = 'en';
  let hits = 0;
  for (const [tag, re] of LATIN_WORDS) {
    const n = lower.match(re)?.length ?? 0;
    if (n > hits) {
      lang = tag;
      hits = n;
    }
  }
  return lang;
}
