import fc from 'fast-check';
import { cdata } from '../../src/channels/wechat/parse.js';
import { mostly, sometimes } from './json.js';

/** Generators of WeChat push XML, shared by the pure and the gateway fuzz specs. */

export const MSG_TYPES = ['text', 'image', 'voice', 'video', 'shortvideo', 'location', 'link', 'event', 'file', 'miniprogrampage', 'music', ''];
export const EVENTS = ['subscribe', 'unsubscribe', 'SCAN', 'LOCATION', 'CLICK', 'VIEW', 'TEMPLATESENDJOBFINISH', ''];

/** Text that XML can carry (no C0 controls but tab/newline/CR), with the characters that matter to CDATA and escaping. */
export const xmlSafeChar = fc.oneof(
  { weight: 6, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }).filter((c) => !/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/.test(c)) },
  { weight: 2, arbitrary: fc.constantFrom(']]>', ']]', ']', '<', '>', '&', '&amp;', '&lt;', '&#20013;', '&#x4e2d;', '"', "'", '\n', '\t', ' ', '<![CDATA[', '中', '😀') },
);
export const xmlSafeText = fc.array(xmlSafeChar, { maxLength: 30 }).map((a) => a.join(''));

/** Text of any kind, including what XML cannot carry. */
export const anyText = fc.oneof(
  xmlSafeText,
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.constantFrom('&#0;', '&#x110000;', '&#xD800;', '&unknown;', '&', '&#;', '&#x;', '&amp', '\u0000', '\u0001', '\ud800', '\udfff'),
);

export const eol = (s: string) => s.replace(/\r\n?/g, '\n');

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** One element, written as WeChat does (CDATA) or in the other legal and illegal ways. */
export function element(name: string, value: string, how: number): string {
  switch (how) {
    case 0:
      return `<${name}>${cdata(value)}</${name}>`;
    case 1:
      return `<${name}>${escapeXml(value)}</${name}>`;
    case 2:
      return `<${name}>${value}</${name}>`; // unescaped: often malformed
    case 3:
      return `<${name}/>`;
    case 4:
      return `<${name} a="${escapeXml(value).replace(/"/g, '&quot;')}">${cdata(value)}</${name}>`;
    case 5:
      return `<${name}><Inner>${cdata(value)}</Inner></${name}>`;
    case 6:
      return `<${name}><![CDATA[${value}]]></${name}>`; // CDATA not split at ]]>
    default:
      return `<${name}>${cdata(value)}</${name}><${name}>${cdata(value)}</${name}>`; // repeated
  }
}

/** How each element is written: mostly CDATA (as WeChat does) or escaped text, now and then malformed or odd. */
export const how = fc.oneof({ weight: 60, arbitrary: fc.constant(0) }, { weight: 10, arbitrary: fc.constant(1) }, { weight: 1, arbitrary: fc.nat(7) });

/** A push with random type and fields: the required ones mostly valid, the others present one time in three. */
export const pushFields = fc
  .record({
    ToUserName: mostly(fc.constant('gh_12345test'), anyText),
    FromUserName: mostly(fc.stringMatching(/^o[A-Za-z0-9_-]{27}$/), fc.oneof(fc.constant('oCitizen'), anyText)),
    CreateTime: mostly(fc.integer({ min: 1_500_000_000, max: 2_000_000_000 }).map(String), fc.oneof(fc.stringMatching(/^\d{1,12}$/), fc.constantFrom('9999999999999', '1e9', '-1', ' 1'), anyText)),
    MsgType: mostly(fc.constantFrom(...MSG_TYPES), anyText),
    MsgId: sometimes(mostly(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map(String), anyText), 0.8),
    Content: sometimes(anyText, 0.5),
    PicUrl: sometimes(fc.oneof(fc.webUrl(), anyText), 1 / 3),
    MediaId: sometimes(anyText, 1 / 3),
    Format: sometimes(fc.oneof(fc.constantFrom('amr', 'speex'), anyText), 1 / 3),
    Recognition: sometimes(anyText, 1 / 3),
    ThumbMediaId: sometimes(anyText, 1 / 3),
    Location_X: sometimes(fc.oneof(fc.double({ min: -100, max: 100 }).map(String), anyText), 1 / 3),
    Location_Y: sometimes(fc.oneof(fc.double({ min: -200, max: 200 }).map(String), anyText), 1 / 3),
    Scale: sometimes(fc.nat(20).map(String), 1 / 3),
    Label: sometimes(anyText, 1 / 3),
    Title: sometimes(anyText, 1 / 3),
    Description: sometimes(anyText, 1 / 3),
    Url: sometimes(fc.oneof(fc.webUrl(), anyText), 1 / 3),
    Event: sometimes(fc.oneof(fc.constantFrom(...EVENTS), anyText), 1 / 3),
    EventKey: sometimes(anyText, 1 / 3),
    Latitude: sometimes(fc.double().map(String), 1 / 3),
    Longitude: sometimes(fc.double().map(String), 1 / 3),
  })
  .map((o) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Record<string, string>);

export const pushXml = fc
  .record({
    fields: pushFields,
    hows: fc.array(how, { minLength: 30, maxLength: 30 }),
    order: fc.array(fc.double({ noNaN: true }), { minLength: 30, maxLength: 30 }),
    decl: fc.constantFrom('', '<?xml version="1.0" encoding="UTF-8"?>', '\ufeff', '  \n', '<!-- c -->', '<?pi x?>'),
    root: fc.oneof({ weight: 10, arbitrary: fc.constant('xml') }, { weight: 1, arbitrary: fc.constantFrom('XML', 'root', 'xml:x', '') }),
    tail: fc.oneof({ weight: 10, arbitrary: fc.constant('') }, { weight: 1, arbitrary: fc.constantFrom('<xml/>', 'junk', '</xml>', '<!-- tail -->', '\n') }),
    cut: fc.oneof({ weight: 12, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.nat(30) }),
  })
  .map(({ fields, hows, order, decl, root, tail, cut }) => {
    const entries = Object.entries(fields)
      .map(([k, v], i) => ({ k, v: v as string, h: hows[i]!, o: order[i]! }))
      .sort((a, b) => a.o - b.o);
    const body = entries.map((e) => element(e.k, e.v, e.h)).join('');
    const xml = `${decl}<${root}>${body}</${root}>${tail}`;
    return cut > 0 ? xml.slice(0, Math.max(0, xml.length - cut)) : xml;
  });

/** Entity definitions: expansion bombs and external entities must not hang or leak. */
export const doctypeXml = fc.constantFrom(
  '<!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;"><!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">]><xml><ToUserName>gh</ToUserName><FromUserName>o1</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;</Content></xml>',
  '<!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]><xml><ToUserName>gh</ToUserName><FromUserName>o1</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>&x;</Content></xml>',
  '<!DOCTYPE xml [<!ENTITY a "&b;"><!ENTITY b "&a;">]><xml><ToUserName>gh</ToUserName><FromUserName>o1</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>&a;</Content></xml>',
  '<!DOCTYPE xml [<!ENTITY lt2 "<Content>x</Content>">]><xml><ToUserName>gh</ToUserName><FromUserName>o1</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType>&lt2;</xml>',
  `<!DOCTYPE xml [<!ENTITY big "${'x'.repeat(20000)}">]><xml><ToUserName>gh</ToUserName><FromUserName>o1</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>&big;&big;</Content></xml>`,
  '<!DOCTYPE xml><xml><ToUserName>gh</ToUserName><FromUserName>o1</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>hi</Content></xml>',
  '<!DOCTYPE xml [<!ELEMENT xml ANY><!ATTLIST xml a CDATA "x">]><xml/>',
  '<!DOCTYPE',
  '<!DOCTYPE xml [',
);

export const anyString = fc.oneof(fc.string({ maxLength: 300 }), fc.string({ unit: 'binary', maxLength: 300 }), fc.constantFrom('', '<xml>', '<xml></xml>', '<xml/>', '<?xml?>', '<xml><Encrypt/></xml>', '\u0000', '<a><b></a></b>'));
