/**
 * Credentials in free text (configuration errors, log lines) are hidden by their
 * shape, whatever the text around them: a mistyped URL is not a URL any more, so a
 * URL parser would hand it back whole, password included.
 */

/** `password=…`, `"secret": "…"`, `token: …`, `api_key=…` and the like, in query strings, JSON or prose. */
const NAMED = /((?:passw(?:or)?d|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key)s?["']?\s*[=:]\s*["']?)[^\s&;,"'}]+/gi;

/**
 * The user-information part before the last `@` of a word: `scheme://user:pass@host`,
 * the same with `//` or `:` mistyped (`amqp//admin:pass@host`, `amqp:/admin:pass@host`),
 * or a bare `user:pass@host`. The user name stays when the shape shows where it ends;
 * a lone token before `@` after `//` (`https://TOKEN@host`) is a credential too. A word
 * with no `:` and no `//` before its `@` is an e-mail address and stays.
 */
function redactWord(word: string): string {
  const at = word.lastIndexOf('@');
  if (at <= 0) return word;
  const before = word.slice(0, at);
  const slashes = before.indexOf('//');
  const start = slashes >= 0 ? slashes + 2 : 0;
  const userinfo = before.slice(start);
  const colon = userinfo.indexOf(':');
  if (colon < 0) return slashes >= 0 && userinfo !== '' ? `${before.slice(0, start)}***${word.slice(at)}` : word;
  return `${before.slice(0, start + colon)}:***${word.slice(at)}`;
}

export function redactCredentials(text: string): string {
  const named = text.replace(NAMED, '$1***');
  // Word by word (`\S+` is linear), not one pattern around `@`, which backtracks quadratically on long words.
  return named.includes('@') ? named.replace(/\S+/g, (w) => (w.includes('@') ? redactWord(w) : w)) : named;
}

/** Every occurrence of each known secret value replaced; the longest first, so a secret containing another is hidden whole. */
export function redactValues(text: string, secrets: Iterable<string>): string {
  let out = text;
  // Very short values (`1`, `on`) would blank unrelated words and hide nothing worth hiding.
  for (const s of [...new Set(secrets)].filter((v) => v.length >= 4).sort((a, b) => b.length - a.length)) out = out.split(s).join('***');
  return out;
}
