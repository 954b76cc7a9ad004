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
 * Characters no ticket text may hold (contract section 5, "Text"): C0/C1 controls
 * other than tab and line feed, and the bidirectional embeddings, overrides and
 * isolates (U+202A–U+202E, U+2066–U+2069). Controls break the terminals, logs and
 * mail headers downstream systems paste ticket text into; a bidi override makes
 * `exe.txt` display as `txt.exe` and reorders a case worker's view of a complaint.
 */
const FORBIDDEN = '\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f\\u202a-\\u202e\\u2066-\\u2069';
const FORBIDDEN_RE = new RegExp(`[${FORBIDDEN}]`);
const FORBIDDEN_ALL = new RegExp(`[${FORBIDDEN}]`, 'g');
/** In an id even tab and line feed are refused: no upstream id holds one, and a line break in an id forges log lines. */
const ID_FORBIDDEN_ALL = new RegExp(`[\\t\\n\\u2028\\u2029${FORBIDDEN}]`, 'g');
/** Line breaks besides LF that renderers honour: NEL (a C1 control), LINE and PARAGRAPH SEPARATOR. */
const OTHER_BREAKS = /\r\n?|[\u0085\u2028\u2029]/g;

/** True when `text` may stand in a ticket as is: well-formed, no forbidden control or bidi character. */
export function isSafeText(text: string): boolean {
  return (text as string & { isWellFormed(): boolean }).isWellFormed() && !FORBIDDEN_RE.test(text);
}

/** `isSafeText`, and on one line: no line feed, tab or other line break (subjects end up in mail headers). */
export function isOneLine(text: string): boolean {
  return isSafeText(text) && !/[\t\n\u2028\u2029]/.test(text);
}

/**
 * Citizens' text arrives from many encoders (handsets, mail clients, apps). The
 * ticket carries one canonical form: Unicode NFC, no control or bidi formatting
 * characters, runs of blanks folded, at most one empty line in a row, trimmed.
 */
export function cleanText(text: string): string {
  return wellFormed(text)
    .replace(OTHER_BREAKS, '\n')
    .replace(/\u00a0|\u3000/g, ' ')
    .replace(FORBIDDEN_ALL, '')
    // Zero-width and BOM characters carry nothing a reader sees and defeat duplicate detection.
    .replace(/[\u200b-\u200d\u2060\ufeff]/g, '')
    .replace(/[ \t]+/g, ' ')
    .replace(/ *\n */g, '\n')
    .replace(/\n{3,}/g, '\n\n')
    .trim()
    // Last: a removed character can bring two combining marks together, which NFC then reorders.
    .normalize('NFC');
}

/** `cleanText` on one line: a subject or name with a line break could start a new mail header (`Hello\nBcc: …`). */
export function cleanLine(text: string): string {
  return cleanText(text).replace(/\n+/g, ' ');
}

/**
 * Ids (channelUserId, message ids, MIME types) are compared with what the platform
 * sends next time, so they are neither normalised nor trimmed; a character no ticket
 * may hold becomes U+FFFD rather than vanishing, so that `a\u202eb` and `ab` stay
 * two different ids and the damage stays visible.
 */
export function cleanId(text: string): string {
  return wellFormed(text).replace(ID_FORBIDDEN_ALL, '\ufffd');
}

/** The least that makes free text safe (channel facts in `ticket.source`): forbidden characters removed, nothing else changed. */
export function stripUnsafe(text: string): string {
  return wellFormed(text).replace(FORBIDDEN_ALL, '');
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
