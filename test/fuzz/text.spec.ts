import { expect } from 'chai';
import fc from 'fast-check';
import { cleanId, cleanLine, cleanText, isOneLine, isSafeText, stripUnsafe } from '../../src/normalize/text.js';
import { cleanInbound } from '../../src/normalize/inbound.js';
import { AppTicketRequest, toInbound as appToInbound } from '../../src/channels/app/parse.js';
import { WechatPush, TICKET_TYPES, toInbound as wxToInbound } from '../../src/channels/wechat/parse.js';
import { WeiboPush, MESSAGE_TYPES, toInbound as wbToInbound } from '../../src/channels/weibo/parse.js';
import { classify as tgClassify, parseUpdate, toInbound as tgToInbound } from '../../src/channels/telegram/parse.js';
import { assemble, classify as smsClassify } from '../../src/channels/sms/parse.js';
import { encodeOutgoing, TextTooLongError } from '../../src/channels/sms/encode.js';
import { parseMail } from '../../src/channels/mailbox/parse.js';
import { FormInput, formToInbound } from '../../src/channels/mailbox/form-input.js';
import type { Inbound } from '../../src/channels/types.js';
import { fcParams } from './runs.js';
import { expectSafeText, expectTicketText, timed, timedAsync } from './helpers.js';

/**
 * Contract section 5, "Text": whatever a citizen or a platform sends, the text
 * the intake makes a ticket of is well-formed, free of C0/C1 controls (but line
 * feed and tab) and of bidi overrides and isolates, with subject and name on one
 * line. Hostile strings go through every channel's pure parser and then through
 * the intake's cleanup (`cleanInbound`), the one step every channel shares.
 */

/** What attackers and broken encoders send: controls, bidi overrides, lone surrogates, header injections. */
const HOSTILE = [
  '\u0000', '\u0007', '\u001b[31m', '\r', '\n', '\r\n', '\t', '\u000b', '\u000c', '\u0085', '\u009b', '\u007f',
  '\u202a', '\u202b', '\u202c', '\u202d', '\u202e', '\u2066', '\u2067', '\u2068', '\u2069', '\u2028', '\u2029',
  '\ud800', '\udbff', '\udc00', '\udfff', '\ufeff', '\u200b', '\u00a0', '\u3000',
  '\nBcc: attacker@evil.example', 'txt.exe', '😀', '路灯坏了', 'e\u0301', ' ', '  ',
];
export const hostileText = fc.oneof(
  {
    weight: 3,
    arbitrary: fc
      .array(fc.oneof(fc.constantFrom(...HOSTILE), fc.string({ unit: 'binary', maxLength: 4 }), fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c))), { maxLength: 24 })
      .map((a) => a.join('')),
  },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 60 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 30 }) },
);
/** Hostile, but never empty after cleanup: a ticket then surely carries it. */
const hostileNonEmpty = hostileText.map((s) => `${s}x`);

function checkCleaned(inbound: Inbound, what: string): Inbound {
  const clean = timed('cleanInbound', () => cleanInbound(inbound));
  expectTicketText(clean, what);
  // Cleaning is deterministic and does not touch the dedupe key: the same input twice is one ticket.
  expect(cleanInbound(inbound)).to.deep.equal(clean);
  expect(clean.dedupeKey).to.equal(inbound.dedupeKey);
  // Already clean text is left as it is.
  expect(cleanInbound(clean)).to.deep.equal(clean);
  return clean;
}

describe('fuzz: ticket text (contract section 5, "Text")', function () {
  this.timeout(600_000);

  it('cleanText, cleanLine, cleanId and stripUnsafe give text the contract allows, and cleaning twice changes nothing', () => {
    fc.assert(
      fc.property(hostileText, (s) => {
        const text = timed('cleanText', () => cleanText(s));
        const line = timed('cleanLine', () => cleanLine(s));
        const id = timed('cleanId', () => cleanId(s));
        const stripped = timed('stripUnsafe', () => stripUnsafe(s));
        expectSafeText(text, 'cleanText');
        expectSafeText(line, 'cleanLine', true);
        expectSafeText(id, 'cleanId', true);
        expectSafeText(stripped, 'stripUnsafe');
        expect(isSafeText(text) && isSafeText(id) && isSafeText(stripped) && isOneLine(line)).to.equal(true);
        expect(cleanText(text)).to.equal(text);
        expect(cleanLine(line)).to.equal(line);
        expect(cleanId(id)).to.equal(id);
        // An id keeps its length: each refused unit becomes one U+FFFD, so distinct ids of one length stay distinct where they were clean.
        expect(id.length).to.equal(s.length);
      }),
      fcParams(),
    );
  });

  it('isSafeText / isOneLine agree with the contract written out code point by code point', () => {
    fc.assert(
      fc.property(hostileText, (s) => {
        let safe = true;
        try {
          expectSafeText(s, 's');
        } catch {
          safe = false;
        }
        expect(isSafeText(s)).to.equal(safe);
        let one = true;
        try {
          expectSafeText(s, 's', true);
        } catch {
          one = false;
        }
        expect(isOneLine(s)).to.equal(one);
      }),
      fcParams(),
    );
  });

  it('app: any hostile request the schema takes becomes clean ticket text; a clientMessageId it would have to change is refused', () => {
    fc.assert(
      fc.property(
        fc.record({ id: hostileText, cmid: fc.oneof(hostileNonEmpty, fc.constant('m-1')), name: hostileText, subject: hostileText, content: hostileNonEmpty, address: hostileText, fileName: hostileNonEmpty, mimeType: hostileNonEmpty }),
        (f) => {
          const body = {
            clientMessageId: f.cmid,
            citizen: { id: f.id, name: f.name },
            content: f.content,
            subject: f.subject,
            location: { lat: 1, lon: 2, address: f.address },
            attachments: [{ fileName: f.fileName, mimeType: f.mimeType, dataBase64: 'aGk=' }],
          };
          const r = AppTicketRequest.safeParse(body);
          let cmidSafe = true;
          try {
            expectSafeText(f.cmid.trim(), 'clientMessageId', true);
          } catch {
            cmidSafe = false;
          }
          if (!r.success) {
            expect(cmidSafe, 'only the idempotency key is refused for its characters').to.equal(false);
            expect(r.error.issues.some((i) => i.path[0] === 'clientMessageId')).to.equal(true);
            return;
          }
          expect(cmidSafe).to.equal(true);
          checkCleaned(appToInbound(r.data, 'fuzz', Buffer.from('{}')), 'app');
        },
      ),
      fcParams(),
    );
  });

  it('wechat: hostile push fields of every message type become clean ticket text', () => {
    fc.assert(
      fc.property(fc.constantFrom(...TICKET_TYPES), fc.array(hostileText, { minLength: 12, maxLength: 12 }), (type, t) => {
        const push = WechatPush.parse({
          ToUserName: t[0], FromUserName: `o${t[1]}`, CreateTime: '1700000000', MsgType: type, MsgId: t[2] || '1',
          Content: t[3], PicUrl: t[4], MediaId: t[5], Recognition: t[6], Label: t[7], Title: t[8], Description: t[9], Url: t[10], Format: t[11],
          Location_X: '30.1', Location_Y: '120.2',
        });
        checkCleaned(wxToInbound(push, { raw: '<xml/>', encrypted: false }), 'wechat');
      }),
      fcParams(),
    );
  });

  it('weibo: hostile text and data of every message type become clean ticket text', () => {
    fc.assert(
      fc.property(fc.constantFrom(...MESSAGE_TYPES), hostileText, hostileText, hostileText, (type, text, createdAt, vfid) => {
        const push = WeiboPush.parse({ type, sender_id: '5000000001', receiver_id: '6000000001', created_at: `x${createdAt}`, text, data: { vfid, tovfid: vfid, latitude: '30', longitude: '120' } });
        checkCleaned(wbToInbound(push, '{}'), 'weibo');
      }),
      fcParams(),
    );
  });

  it('telegram: hostile names, texts, captions, venues and contacts become clean ticket text', () => {
    fc.assert(
      fc.property(fc.constantFrom('text', 'caption', 'venue', 'contact'), fc.array(hostileText, { minLength: 6, maxLength: 6 }), (kind, t) => {
        const message: Record<string, unknown> = {
          message_id: 7, date: 1_700_000_000, chat: { id: 42, type: t[0] }, from: { id: 42, first_name: t[1], last_name: t[2], username: t[3] },
        };
        if (kind === 'text') message.text = `x${t[4]}`;
        if (kind === 'caption') Object.assign(message, { caption: t[4], photo: [{ file_id: t[5] }] });
        if (kind === 'venue') message.venue = { location: { latitude: 30, longitude: 120 }, title: t[4], address: t[5] };
        if (kind === 'contact') message.contact = { phone_number: t[4], first_name: t[5] };
        const update = parseUpdate({ update_id: 1, message });
        if (tgClassify(update).kind !== 'message') return;
        checkCleaned(tgToInbound(update, { raw: '{}' }), 'telegram');
      }),
      fcParams(),
    );
  });

  it('sms: hostile text sent as UCS-2 or GSM 7-bit, assembled from its deliver_sm parts, becomes clean ticket text', () => {
    fc.assert(
      fc.property(hostileText, fc.nat(255), (text, ref) => {
        let enc;
        try {
          enc = encodeOutgoing(text, ref);
        } catch (err) {
          if (err instanceof TextTooLongError) return;
          throw err;
        }
        const segs = enc.parts.map((p) => {
          const c = smsClassify({ command: 'deliver_sm', source_addr: '8613800138000', source_addr_ton: 1, source_addr_npi: 1, destination_addr: '106353112345', esm_class: enc.esmClass, data_coding: enc.dataCoding, short_message: p }, { serviceNumber: '106353112345' });
          if (c.kind !== 'segment') throw new Error(`part classified as ${c.kind}`);
          return c.segment;
        });
        const a = assemble(segs, { serviceNumber: '106353112345', dedupeWindowMs: 600_000 });
        if (a.kind !== 'inbound') throw new Error(`assemble rejected: ${a.detail}`);
        checkCleaned(a.inbound, 'sms');
      }),
      fcParams(),
    );
  });

  it('mailbox: hostile encoded-word subject, sender name, file name and body of a real MIME message become clean ticket text', async () => {
    const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');
    const word = (s: string) => `=?UTF-8?B?${b64(s)}?=`;
    await fc.assert(
      fc.asyncProperty(hostileText, hostileText, hostileText, hostileNonEmpty, (subject, name, fileName, body) => {
        const raw = Buffer.from(
          [
            `From: ${word(name)} <zhang.san@citizen.example.cn>`,
            'To: 12345@gov.example.cn',
            `Subject: ${word(subject)}`,
            'Message-ID: <m1@citizen.example.cn>',
            'MIME-Version: 1.0',
            'Content-Type: multipart/mixed; boundary="b"',
            '',
            '--b',
            'Content-Type: text/plain; charset=utf-8',
            'Content-Transfer-Encoding: base64',
            '',
            b64(body),
            '--b',
            `Content-Type: application/octet-stream; name="${word(`${fileName}.pdf`)}"`,
            `Content-Disposition: attachment; filename="${word(`${fileName}.pdf`)}"`,
            'Content-Transfer-Encoding: base64',
            '',
            b64('%PDF'),
            '--b--',
            '',
          ].join('\r\n'),
        );
        return timedAsync('parseMail', () => parseMail(raw, { mailbox: 'INBOX', uidValidity: '1', uid: 1 }, { maxBytes: 1 << 20 })).then((r) => {
          if (r.kind === 'inbound') checkCleaned(r.inbound, 'mailbox');
        });
      }),
      fcParams(),
    );
  });

  it('mailbox web form: hostile name, subject and content become clean ticket text', () => {
    fc.assert(
      fc.property(hostileText, hostileText, hostileNonEmpty, (name, subject, content) => {
        const r = FormInput.safeParse({ name, subject, content, phone: '13800138000', nonce: 'abcdefghijklmnop1234' });
        if (!r.success) return;
        checkCleaned(formToInbound(r.data, [{ fileName: `${subject}.jpg`, mimeType: 'image/jpeg', data: Buffer.from('x') }], new Date()), 'form');
      }),
      fcParams(),
    );
  });
});
