import fc from 'fast-check';
import { anyJsonText, mostly, mutate, mutation, numberText, objectText, stringText, type JsonText } from './json.js';

/** Generators of app API request bodies, shared by the pure and the gateway fuzz specs. */

export let seq = 0;
export const nextClientMessageId = () => `fuzz-${process.pid}-${++seq}`;

export const attachmentText = fc
  .record(
    {
      fileName: fc.oneof(stringText, fc.constant('"photo.jpg"')),
      mimeType: fc.oneof(stringText, fc.constant('"image/jpeg"')),
      dataBase64: mostly(fc.base64String({ maxLength: 200 }).map((s) => JSON.stringify(s)), fc.oneof(stringText, fc.constant('"===="'), fc.constant('"YQ"'))),
    },
    { requiredKeys: ['fileName', 'mimeType', 'dataBase64'] },
  )
  .map((o) => objectText(Object.entries(o)));

export const appBodyText = fc
  .record(
    {
      clientMessageId: fc.oneof({ weight: 6, arbitrary: fc.constant('fresh') }, { weight: 1, arbitrary: fc.oneof(stringText, numberText, fc.constant('null'), fc.constant('"  "')) }),
      citizen: mostly(
        fc
          .record(
            {
              id: stringText,
              name: stringText,
              phone: mostly(fc.constantFrom('"13800138000"', '"+86 138-0013-8000"', '"008613800138000"', '"010-12345678"', '"+1 (555) 123-4567"'), stringText, 3),
              email: mostly(fc.constantFrom('"zhang.san@example.cn"', '"Li.Si+tag@Mail.Example.COM"'), fc.oneof(fc.emailAddress().map((e) => JSON.stringify(e)), stringText), 3),
            },
            { requiredKeys: [] },
          )
          .map((o) => objectText(Object.entries(o))),
        anyJsonText,
        4,
      ),
      content: fc.oneof({ weight: 5, arbitrary: stringText }, { weight: 1, arbitrary: fc.oneof(numberText, anyJsonText, fc.constant(JSON.stringify('长'.repeat(20_001)))) }),
      subject: stringText,
      location: mostly(
        fc
          .record(
            { lat: mostly(fc.double({ min: -90, max: 90, noNaN: true }).map(String), numberText), lon: mostly(fc.double({ min: -180, max: 180, noNaN: true }).map(String), numberText), address: stringText },
            { requiredKeys: ['lat', 'lon'] },
          )
          .map((o) => objectText(Object.entries(o))),
        anyJsonText,
        4,
      ),
      attachments: mostly(fc.array(attachmentText, { maxLength: 3 }).map((a) => `[${a.join(',')}]`), anyJsonText, 4),
      extra: anyJsonText,
    },
    { requiredKeys: ['clientMessageId', 'content'] },
  )
  .chain((o) => mutation.map((m) => ({ o, m })))
  .map(({ o, m }) => {
    const entries = Object.entries(o).map(([k, v]) => [k, k === 'clientMessageId' && v === 'fresh' ? JSON.stringify(nextClientMessageId()) : v] as [string, JsonText]);
    return mutate(objectText(entries), m);
  });
