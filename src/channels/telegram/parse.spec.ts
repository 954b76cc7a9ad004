import { expect } from 'chai';
import { classify, fileMeta, isTransientTelegramError, normalizePhone, parseUpdate, pickPhoto, toInbound } from './parse.js';

const msg = (extra: Record<string, unknown>) => ({
  update_id: 100000001,
  message: { message_id: 7, date: 1763877600, chat: { id: 4503599627370495, type: 'private' }, from: { id: 4503599627370495, is_bot: false, first_name: 'Li', last_name: 'Lei', username: 'lilei', language_code: 'zh-hans' }, ...extra },
});

describe('telegram parse', () => {
  it('text → Inbound keyed by update_id', () => {
    const raw = JSON.stringify(msg({ text: '路灯坏了' }));
    const u = parseUpdate(JSON.parse(raw));
    expect(classify(u).kind).to.equal('message');
    const inb = toInbound(u, { raw });
    expect(inb.dedupeKey).to.equal('100000001');
    expect(inb.content).to.equal('路灯坏了');
    expect(inb.citizen).to.deep.equal({ channelUserId: '4503599627370495', phone: null, email: null, name: 'Li Lei' });
    expect(inb.sentAt?.toISOString()).to.equal('2025-11-23T06:00:00.000Z');
    expect(inb.source).to.include({ chatId: '4503599627370495', messageId: 7, type: 'text', username: 'lilei' });
    expect(inb.channelMessageIds).to.deep.equal(['4503599627370495:7']);
  });

  it('photo: caption as content, largest fitting size', () => {
    const sizes = [
      { file_id: 'small', width: 90, height: 90, file_size: 1000 },
      { file_id: 'big', width: 1280, height: 1280, file_size: 200000 },
      { file_id: 'mid', width: 320, height: 320, file_size: 20000 },
    ];
    expect(pickPhoto(sizes, 1e6)?.file_id).to.equal('big');
    expect(pickPhoto(sizes, 50000)?.file_id).to.equal('mid');
    expect(pickPhoto(sizes, 10)).to.equal(null);
    const u = parseUpdate(msg({ photo: sizes, caption: '垃圾堆' }));
    const inb = toInbound(u, { raw: '', attachments: [{ fileName: 'a.jpg', mimeType: 'image/jpeg', data: Buffer.from('x') }] });
    expect(inb.content).to.equal('垃圾堆');
    expect(inb.attachments).to.have.length(1);
    const failed = toInbound(parseUpdate(msg({ photo: sizes })), { raw: '', mediaError: 'HTTP 500' });
    expect(failed.content).to.equal('[图片]');
    expect(failed.source.mediaError).to.equal('HTTP 500');
  });

  it('location, venue and contact', () => {
    const loc = toInbound(parseUpdate(msg({ location: { latitude: 36.65, longitude: 117.12 } })), { raw: '' });
    expect(loc.location).to.deep.equal({ lat: 36.65, lon: 117.12, address: null });
    const venue = toInbound(parseUpdate(msg({ location: { latitude: 1, longitude: 2 }, venue: { location: { latitude: 1, longitude: 2 }, title: '市政府', address: '人民路1号' } })), { raw: '' });
    expect(venue.location).to.deep.equal({ lat: 1, lon: 2, address: '人民路1号' });
    const own = toInbound(parseUpdate(msg({ contact: { phone_number: '8613800138000', first_name: 'Li', user_id: 4503599627370495 } })), { raw: '' });
    expect(own.citizen.phone).to.equal('+8613800138000');
    const other = toInbound(parseUpdate(msg({ contact: { phone_number: '+8613900139000', first_name: 'X', user_id: 1 } })), { raw: '' });
    expect(other.citizen.phone).to.equal(null);
    expect(other.source.contact).to.deep.include({ phone: '+8613900139000', own: false });
  });

  it('classifies /start, unsupported and ignored updates', () => {
    expect(classify(parseUpdate(msg({ text: '/start' }))).kind).to.equal('start');
    expect(classify(parseUpdate(msg({ text: '/start abc' }))).kind).to.equal('start');
    expect(classify(parseUpdate(msg({ sticker: { file_id: 's' } })))).to.deep.include({ kind: 'unsupported', type: 'sticker' });
    expect(classify(parseUpdate({ update_id: 5, callback_query: { id: 'x' } }))).to.deep.equal({ kind: 'ignored', type: 'callback_query' });
    expect(classify(parseUpdate(msg({ text: 'hi', from: { id: 1, is_bot: true } }))).kind).to.equal('ignored');
  });

  it('replaces lone surrogates and ignores impossible dates', () => {
    const u = parseUpdate(JSON.parse('{"update_id":1,"message":{"message_id":1,"date":99999999999999,"chat":{"id":1,"type":"private"},"from":{"id":1,"first_name":"\\udc00x"},"text":"a\\ud800"}}'));
    const inb = toInbound(u, { raw: '' });
    expect(inb.content).to.equal('a\ufffd');
    expect(inb.citizen.name).to.equal('\ufffdx');
    expect(inb.sentAt).to.equal(null);
  });

  it('rejects non-updates', () => {
    expect(() => parseUpdate({ message: {} })).to.throw(/Update/);
    expect(() => parseUpdate('x')).to.throw();
  });

  it('helpers', () => {
    expect(normalizePhone('+86 138-0013-8000')).to.equal('+8613800138000');
    expect(fileMeta('photos/file_3.jpg')).to.deep.equal({ fileName: 'file_3.jpg', mimeType: 'image/jpeg' });
    expect(isTransientTelegramError(429)).to.equal(true);
    expect(isTransientTelegramError(403)).to.equal(false);
  });
});
