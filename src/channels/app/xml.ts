/**
 * The few XML documents Open311 GeoReport v2 answers with: a root element holding
 * a list of flat records (`<services><service>…`, `<service_requests><request>…`,
 * `<errors><error>…`). Hand-written rather than a general builder because the
 * shapes are fixed and every value must be escaped the same way.
 */

export type XmlValue = string | number | boolean | null | undefined | XmlValue[] | { [k: string]: XmlValue };

// Characters XML 1.0 cannot carry at all, even escaped (C0 controls other than tab, LF, CR; U+FFFE/FFFF; lone surrogates).
// eslint-disable-next-line no-control-regex
const NOT_XML = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

export function xmlText(s: string): string {
  return s.replace(NOT_XML, '\uFFFD').replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/**
 * One element. Null and undefined are empty elements (GeoReport's "no value");
 * an array repeats `itemName` inside; an object nests its fields in order.
 */
function element(name: string, value: XmlValue, itemName: (parent: string) => string): string {
  if (value === null || value === undefined) return `<${name}></${name}>`;
  if (Array.isArray(value)) return `<${name}>${value.map((v) => element(itemName(name), v, itemName)).join('')}</${name}>`;
  if (typeof value === 'object') return `<${name}>${Object.entries(value).map(([k, v]) => element(k, v, itemName)).join('')}</${name}>`;
  return `<${name}>${xmlText(String(value))}</${name}>`;
}

/**
 * A whole document: `root` holding `items`, each as `<item>`. Nested arrays inside
 * items name their children by `childOf` (e.g. `formats` → `format`).
 */
export function xmlDocument(root: string, item: string, items: XmlValue[], childOf: Record<string, string> = {}): string {
  const names = (parent: string) => (parent === root ? item : (childOf[parent] ?? 'item'));
  return `<?xml version="1.0" encoding="utf-8"?>\n${element(root, items, names)}`;
}
