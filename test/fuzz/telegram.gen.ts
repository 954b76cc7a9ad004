import fc from 'fast-check';
import { anyJsonText, bigIntText, mostly, mutate, mutation, numberText, objectOf, objectText, sometimes, stringText, type JsonText } from './json.js';

/** Generators of Telegram Update JSON, shared by the pure and the gateway fuzz specs. */

export let updateSeq = 700_000_000;
/** A fresh update_id, so each generated update is a new delivery. */
export const nextUpdateId = () => ++updateSeq;

export const id = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 1, max: 2 ** 52 }).map(String) },
  { weight: 1, arbitrary: fc.oneof(bigIntText, fc.constant('-1001234567890'), stringText) },
);
export const coord = (max: number) => mostly(fc.double({ min: -max, max, noNaN: true }).map((d) => JSON.stringify(d)), fc.oneof(numberText, stringText));
export const locationText = fc.record({ latitude: coord(90), longitude: coord(180) }).map((o) => objectText(Object.entries(o)));
export const photoSize = fc
  .record(
    { file_id: fc.oneof(stringText, fc.constant('"AgACAgIAAx0"')), file_unique_id: stringText, width: fc.nat(5000).map(String), height: fc.nat(5000).map(String), file_size: mostly(fc.nat().map(String), numberText) },
    { requiredKeys: ['file_id'] },
  )
  .map((o) => objectText(Object.entries(o)));

export const userText = fc
  .record(
    {
      id,
      is_bot: mostly(fc.constantFrom('false', 'false', 'false', 'true'), anyJsonText),
      first_name: stringText,
      last_name: stringText,
      username: stringText,
      language_code: fc.oneof(fc.constantFrom('"zh-hans"', '"en"'), stringText),
    },
    { requiredKeys: ['id'] },
  )
  .map((o) => objectText(Object.entries(o)));

/** The message part: one or more content kinds (Telegram sends one; a buggy client or an attacker may send several). */
export const messageText = fc
  .record({
    message_id: mostly(fc.nat().map(String), numberText),
    // Unix seconds; far-off values are in a separate property.
    date: mostly(fc.integer({ min: 0, max: 4_102_444_800 }).map(String), fc.oneof(stringText, fc.constant('1.5'))),
    chat: fc.record({ id, type: fc.oneof(fc.constantFrom('"private"', '"group"', '"supergroup"', '"channel"'), stringText) }).map((o) => objectText(Object.entries(o))),
    from: sometimes(userText, 0.8),
    text: sometimes(mostly(stringText, fc.constantFrom('"/start"', '"/start abc"', '"/start@my_bot x"', '" /start "', '"/start a b"', '"/help"'), 4), 0.66),
    // Content kinds each appear one time in six: most messages carry one kind, some several.
    caption: sometimes(stringText),
    photo: sometimes(fc.array(photoSize, { maxLength: 4 }).map((a) => `[${a.join(',')}]`)),
    location: sometimes(locationText),
    venue: sometimes(fc.record({ location: locationText, title: stringText, address: stringText }, { requiredKeys: ['location'] }).map((o) => objectText(Object.entries(o)))),
    contact: sometimes(
      fc
        .record({ phone_number: fc.oneof(fc.constantFrom('"+8613800138000"', '"8613800138000"', '"(555) 123-4567"'), stringText), first_name: stringText, last_name: stringText, user_id: id }, { requiredKeys: ['phone_number'] })
        .map((o) => objectText(Object.entries(o))),
    ),
    sticker: sometimes(anyJsonText, 1 / 12),
    document: sometimes(anyJsonText, 1 / 12),
    voice: sometimes(anyJsonText, 1 / 12),
    drop: sometimes(fc.constantFrom('message_id', 'date', 'chat'), 1 / 12),
  })
  .map(({ drop, ...o }) => objectOf(drop ? { ...o, [drop]: undefined } : o));

/** A whole Update as raw text. */
export const updateText = fc
  .record({
    updateId: fc.oneof({ weight: 8, arbitrary: fc.constant('fresh') }, { weight: 1, arbitrary: fc.oneof(bigIntText, stringText, fc.constant('-5')) }),
    kind: fc.oneof(
      { weight: 8, arbitrary: fc.constant('message') },
      { weight: 1, arbitrary: fc.constantFrom('edited_message', 'channel_post', 'callback_query', 'my_chat_member', 'inline_query', 'none') },
    ),
    message: fc.oneof({ weight: 8, arbitrary: messageText }, { weight: 1, arbitrary: anyJsonText }),
    extra: fc.option(fc.tuple(fc.string({ maxLength: 10 }), anyJsonText), { nil: undefined }),
    mut: mutation,
  })
  .map(({ updateId, kind, message, extra, mut }) => {
    const uid = updateId === 'fresh' ? String(nextUpdateId()) : updateId;
    const entries: [string, JsonText][] = [['update_id', uid]];
    if (kind !== 'none') entries.push([kind, message]);
    if (extra) entries.push(extra);
    return { text: mutate(objectText(entries), mut), fresh: updateId === 'fresh' && mut.kind === 'none' };
  });
