import fc from 'fast-check';
import { anyJsonText, bigIntText, mostly, mutate, mutation, numberText, objectText, stringText, ws, type JsonText } from './json.js';

/** Generators of Weibo push JSON, shared by the pure and the gateway fuzz specs. */

export const ID_KEYS = new Set(['sender_id', 'receiver_id', 'id', 'uid', 'vfid', 'tovfid']);
export const TYPES = ['text', 'image', 'position', 'voice', 'event', 'mention', 'video', ''];
export const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** `Mon Jul 16 18:09:20 +0800 2012`, and near misses. */
export const createdAt = fc.oneof(
  fc
    .record({
      d: fc.constantFrom('Mon', 'Tue', 'Sun'),
      m: fc.constantFrom(...MONTHS),
      day: fc.integer({ min: 1, max: 31 }),
      h: fc.integer({ min: 0, max: 23 }),
      mi: fc.integer({ min: 0, max: 59 }),
      s: fc.integer({ min: 0, max: 59 }),
      sign: fc.constantFrom('+', '-'),
      off: fc.integer({ min: 0, max: 1400 }),
      y: fc.integer({ min: 1000, max: 9999 }),
    })
    .map(({ d, m, day, h, mi, s, sign, off, y }) => {
      const p = (n: number) => String(n).padStart(2, '0');
      return `${d} ${m} ${p(day)} ${p(h)}:${p(mi)}:${p(s)} ${sign}${String(off).padStart(4, '0')} ${y}`;
    }),
  fc.constantFrom('Mon Jul 16 18:09:20 +0800 2012', 'Mon Xyz 16 18:09:20 +0800 2012', 'Mon Jul 99 99:99:99 +9999 2012', '2012-07-16T18:09:20+08:00', ''),
  fc.string({ maxLength: 40 }),
);

export let sender = 9_007_199_254_740_993n;
/** A fresh bare int64 sender id above 2^53: unique, so each push is a new message. */
export const nextSender = () => (sender += 2n).toString();

export const dataText = mostly(
  fc
    .record(
      {
        latitude: fc.oneof(numberText, stringText, fc.double({ min: -90, max: 90 }).map(String)),
        longitude: fc.oneof(numberText, stringText, fc.double({ min: -180, max: 180 }).map(String)),
        vfid: fc.oneof(bigIntText, stringText),
        tovfid: fc.oneof(bigIntText, stringText),
        subtype: fc.oneof(fc.constantFrom('follow', 'unfollow', 'subscribe', 'scan').map((s) => JSON.stringify(s)), stringText),
        key: stringText,
        id: bigIntText,
      },
      { requiredKeys: [] },
    )
    .map((o) => objectText(Object.entries(o) as [string, string][])),
  anyJsonText,
  4,
);

/** A push as raw text: required fields sometimes missing or ill-typed, extra keys, duplicates, spacing, breakage. */
export const pushText = fc
  .record({
    type: fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...TYPES).map((t) => JSON.stringify(t)) }, { weight: 1, arbitrary: fc.oneof(stringText, numberText, fc.constant('null')) }),
    sender_id: fc.oneof({ weight: 6, arbitrary: fc.constant('fresh') }, { weight: 2, arbitrary: bigIntText }, { weight: 1, arbitrary: fc.oneof(stringText, fc.constant('null'), bigIntText.map((n) => JSON.stringify(n))) }),
    receiver_id: mostly(fc.oneof(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map(String), fc.constant('"1902538057"')), fc.oneof(bigIntText, bigIntText.map((n) => JSON.stringify(n)), stringText)),
    created_at: fc.oneof({ weight: 5, arbitrary: createdAt.map((c) => JSON.stringify(c)) }, { weight: 1, arbitrary: fc.oneof(numberText, fc.constant('null')) }),
    text: fc.oneof({ weight: 5, arbitrary: stringText }, { weight: 1, arbitrary: fc.oneof(numberText, fc.constant('null'), anyJsonText) }),
    data: dataText,
    extra: anyJsonText,
    drop: mostly(fc.constant([] as string[]), fc.array(fc.constantFrom('type', 'sender_id', 'receiver_id', 'created_at', 'text', 'data'), { minLength: 1, maxLength: 2 }), 4),
    dup: fc.option(fc.constantFrom('type', 'sender_id', 'text'), { nil: undefined, freq: 8 }),
    order: fc.array(fc.double({ noNaN: true }), { minLength: 8, maxLength: 8 }),
    spaces: fc.array(ws, { maxLength: 6 }),
    mut: mutation,
  })
  .map((r) => {
    const senderId = r.sender_id === 'fresh' ? nextSender() : r.sender_id;
    const fields: [string, JsonText][] = [
      ['type', r.type],
      ['sender_id', senderId],
      ['receiver_id', r.receiver_id],
      ['created_at', r.created_at],
      ['text', r.text],
      ['data', r.data],
      ['extra', r.extra],
    ];
    const entries = fields.filter(([k]) => !(r.drop as string[]).includes(k)).map((e, i) => ({ e, o: r.order[i]! }));
    entries.sort((a, b) => a.o - b.o);
    const list = entries.map((x) => x.e);
    if (r.dup) list.push([r.dup, r.dup === 'sender_id' ? nextSender() : JSON.stringify('dup')]);
    return { text: mutate(objectText(list, r.spaces), r.mut), senderId, mutated: r.mut.kind !== 'none', dup: r.dup };
  });
