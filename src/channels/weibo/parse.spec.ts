import { expect } from 'chai';
import {
  classify,
  dedupeKeyFor,
  isTransientWeiboError,
  parseCreatedAt,
  parseJsonKeepingIds,
  parsePush,
  replyForm,
  toInbound,
  verifyWeiboSignature,
  weiboSignature,
} from './parse.js';

describe('weibo parse', () => {
  it('reproduces the signature example of the Messages_api_start wiki page', () => {
    expect(weiboSignature('xyz123xyz', '1397022061823', '57155157')).to.equal('90e4c22c90a58f26526c2dd5b6c56c8822edeaa1');
    expect(
      verifyWeiboSignature('xyz123xyz', { signature: '90e4c22c90a58f26526c2dd5b6c56c8822edeaa1', timestamp: '1397022061823', nonce: '57155157' }),
    ).to.equal(true);
    expect(verifyWeiboSignature('xyz123xyz', { signature: '90e4c22c90a58f26526c2dd5b6c56c8822edeaa1', timestamp: '1397022061824', nonce: '57155157' })).to.equal(false);
    expect(verifyWeiboSignature('xyz123xyz', {})).to.equal(false);
  });

  it('keeps int64 ids exact, and never touches numbers inside strings', () => {
    const raw = '{"type":"text","receiver_id": 9223372036854775807 ,"sender_id":18446744073709551,"text":"\\"sender_id\\": 1, id:2","data":{"n":12345678901234567890},"created_at":"x"}';
    const v = parseJsonKeepingIds(raw) as Record<string, unknown>;
    expect(v.receiver_id).to.equal('9223372036854775807');
    expect(v.sender_id).to.equal('18446744073709551');
    expect(v.text).to.equal('"sender_id": 1, id:2');
    expect((v.data as { n: number }).n).to.be.a('number');
    expect(parseJsonKeepingIds('[{"id":-5},{"x":[1,2],"uid":7}]')).to.deep.equal([{ id: '-5' }, { x: [1, 2], uid: '7' }]);
  });

  it('text message → Inbound keyed by sender_id + created_at', () => {
    const raw = JSON.stringify({ type: 'text', receiver_id: 1902538057, sender_id: 2489518277, created_at: 'Mon Jul 16 18:09:20 +0800 2012', text: '路灯不亮', data: {} });
    const push = parsePush(raw.replace('2489518277', '24895182771234567891'));
    expect(push.sender_id).to.equal('24895182771234567891');
    expect(classify(push)).to.deep.equal({ kind: 'message' });
    expect(dedupeKeyFor(push)).to.equal('24895182771234567891:Mon Jul 16 18:09:20 +0800 2012');
    const inb = toInbound(push, raw);
    expect(inb.channel).to.equal('weibo');
    expect(inb.content).to.equal('路灯不亮');
    expect(inb.citizen.channelUserId).to.equal('24895182771234567891');
    expect(inb.sentAt?.toISOString()).to.equal('2012-07-16T10:09:20.000Z');
    expect(inb.source).to.include({ receiverId: '1902538057', type: 'text' });
  });

  it('position, image and voice', () => {
    const base = { receiver_id: 1, sender_id: 2, created_at: 'Mon Jul 16 18:09:20 +0800 2012' };
    const pos = toInbound(parsePush(JSON.stringify({ ...base, type: 'position', text: '发送了一个位置', data: { longitude: '116.308586', latitude: '39.982525' } })), '');
    expect(pos.location).to.deep.equal({ lat: 39.982525, lon: 116.308586, address: null });
    expect(pos.content).to.equal('发送了一个位置');
    const img = toInbound(parsePush(JSON.stringify({ ...base, type: 'image', data: { vfid: 821804459, tovfid: 821804469 } })), '');
    expect(img.content).to.equal('[图片]');
    expect(img.source).to.include({ vfid: '821804459', tovfid: '821804469' });
    const voice = toInbound(parsePush(JSON.stringify({ ...base, type: 'voice', text: '发了一个语音消息', data: { vfid: 1, tovfid: 2 } })), '');
    expect(voice.content).to.equal('发了一个语音消息');
  });

  it('events and unknown types', () => {
    const base = { receiver_id: 1, sender_id: 2, created_at: 'Mon Jul 16 18:09:20 +0800 2012' };
    expect(classify(parsePush(JSON.stringify({ ...base, type: 'event', data: { subtype: 'follow' } })))).to.deep.equal({ kind: 'event', subtype: 'follow' });
    expect(classify(parsePush(JSON.stringify({ ...base, type: 'mention' })))).to.deep.equal({ kind: 'unsupported', type: 'mention' });
  });

  it('replaces lone surrogates from JSON escapes', () => {
    const raw = '{"type":"text","receiver_id":1,"sender_id":2,"created_at":"x","text":"a\\ud800b\\ud83d\\ude00"}';
    expect(toInbound(parsePush(raw), raw).content).to.equal('a\ufffdb😀');
  });

  it('rejects non-JSON and missing fields', () => {
    expect(() => parsePush('<xml/>')).to.throw(/not JSON/);
    expect(() => parsePush('{"type":"text"}')).to.throw(/required/);
  });

  it('parses the Twitter-style date and refuses others', () => {
    expect(parseCreatedAt('Tue Nov 24 08:00:00 -0500 2026')?.toISOString()).to.equal('2026-11-24T13:00:00.000Z');
    expect(parseCreatedAt('2026-11-24')).to.equal(null);
  });

  it('builds the reply.json form with data as URL-encoded JSON', () => {
    const body = replyForm({ accessToken: 'T', receiverId: '9223372036854775807', text: '中文消息' });
    expect(body).to.contain('data=%7B%22text%22%3A%22%E4%B8%AD%E6%96%87%E6%B6%88%E6%81%AF%22%7D');
    const f = new URLSearchParams(body);
    expect(f.get('receiver_id')).to.equal('9223372036854775807');
    expect(f.get('type')).to.equal('text');
    expect(JSON.parse(f.get('data')!)).to.deep.equal({ text: '中文消息' });
  });

  it('classifies API errors', () => {
    expect(isTransientWeiboError(503, null)).to.equal(true);
    expect(isTransientWeiboError(400, 10023)).to.equal(true);
    expect(isTransientWeiboError(400, 21327)).to.equal(false);
  });
});
