import { convert } from 'html-to-text';

/**
 * Lone UTF-16 surrogates (a JSON `\ud800` escape, a decoder that maps bytes past
 * U+10FFFF to half a pair) become U+FFFD: tickets are JSON read by other
 * languages, where ill-formed UTF-16 breaks encoders.
 */
export function wellFormed(text: string): string {
  // ES2024 String.prototype.toWellFormed does exactly this, natively (no regex scan).
  return (text as string & { toWellFormed(): string }).toWellFormed();
}

/**
 * Citizens' text arrives from many encoders (handsets, mail clients, apps). The
 * ticket carries one canonical form: Unicode NFC, no control characters, runs of
 * blanks folded, at most one empty line in a row, trimmed.
 */
export function cleanText(text: string): string {
  return wellFormed(text)
    .normalize('NFC')
    .replace(/\r\n?/g, '\n')
    .replace(/\u00a0|\u3000/g, ' ')
    // C0/C1 controls except tab and newline; zero-width and BOM characters.
    .replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u200b-\u200d\u2060\ufeff]/g, '')
    .replace(/[ \t]+/g, ' ')
    .replace(/ *\n */g, '\n')
    .replace(/\n{3,}/g, '\n\n')
    .trim();
}

/** HTML (mail bodies, rich app text) to plain text: links keep their URL, images and scripts go. */
export function htmlToText(html: string): string {
  return cleanText(
    convert(html, {
      wordwrap: false,
      selectors: [
        { selector: 'a', options: { hideLinkHrefIfSameAsText: true, ignoreHref: false } },
        { selector: 'img', format: 'skip' },
        { selector: 'style', format: 'skip' },
        { selector: 'script', format: 'skip' },
        { selector: 'h1', options: { uppercase: false } },
        { selector: 'h2', options: { uppercase: false } },
        { selector: 'h3', options: { uppercase: false } },
        { selector: 'table', format: 'dataTable', options: { uppercaseHeaderCells: false } },
      ],
    }),
  );
}

/** Cut to at most `max` characters without splitting a surrogate pair. */
export function truncate(text: string, max: number): string {
  if (text.length <= max) return text;
  let end = max;
  const code = text.charCodeAt(end - 1);
  if (code >= 0xd800 && code <= 0xdbff) end -= 1;
  return text.slice(0, end);
}
