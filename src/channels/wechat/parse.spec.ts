import { expect } from 'chai';
import { XMLParser } from 'fast-xml-parser';
import {
  cdata,
  classify,
  dedupeKeyFor,
  encryptedReplyXml,
  mediaFileName,
  mediaToFetch,
  parseEnvelope,
  parsePush,
  textReplyXml,
  toInbound,
} from './parse.js';

const head = (type: string, extra: string, msgId: string | null = '6054768590064713728') =>
  `<xml><ToUserName><![CDATA[gh_12345]]></ToUserName><FromUserName><![CDATA[oUser_openid]]></FromUserName>` +
  `<CreateTime>1763877600</CreateTime><MsgType><![CDATA[${type}]]></MsgType>${extra}` +
  (msgId ? `<MsgId>${msgId}</MsgId>` : '') +
  `</xml>`;

describe('wechat parse', () => {
  it('text: keeps the 64-bit MsgId exact and the content as sent', () => {
    const xml = head('text', '<Content><![CDATA[小区停电了 & 请处理 <急>]]></Content>', '9223372036854775807');
    const push = parsePush(xml);
    expect(push.MsgId).to.equal('9223372036854775807');
    expect(classify(push)).to.deep.equal({ kind: 'message', msgType: 'text' });
    const inb = toInbound(push, { raw: xml, encrypted: false });
    expect(inb.dedupeKey).to.equal('9223372036854775807');
    expect(inb.channelMessageIds).to.deep.equal(['9223372036854775807']);
    expect(inb.content).to.equal('小区停电了 & 请处理 <急>');
    expect(inb.citizen.channelUserId).to.equal('oUser_openid');
    expect(inb.sentAt?.toISOString()).to.equal('2025-11-23T06:00:00.000Z');
    expect(inb.raw).to.equal(xml);
    expect(inb.source).to.include({ via: 'official-account', msgType: 'text', toUserName: 'gh_12345', encrypted: false });
  });

  it('keeps leading zeros and digits-only content as text', () => {
    const push = parsePush(head('text', '<Content>0012</Content>'));
    expect(push.Content).to.equal('0012');
  });

  it('image: asks for the media, falls back to PicUrl when it could not be fetched', () => {
    const xml = head('image', '<PicUrl><![CDATA[http://mmbiz/pic.jpg]]></PicUrl><MediaId><![CDATA[media_1]]></MediaId>');
    const push = parsePush(xml);
    expect(mediaToFetch(push)).to.deep.equal({ mediaId: 'media_1', kind: 'image' });
    const ok = toInbound(push, {
      raw: xml,
      encrypted: false,
      media: { attachments: [{ fileName: 'a.jpg', mimeType: 'image/jpeg', data: Buffer.from('x') }], mediaError: null },
    });
    expect(ok.content).to.equal('');
    expect(ok.attachments).to.have.length(1);
    expect(ok.source).to.include({ mediaId: 'media_1', picUrl: 'http://mmbiz/pic.jpg' });
    expect(ok.source).not.to.have.property('mediaError');
    const failed = toInbound(push, { raw: xml, encrypted: false, media: { attachments: [], mediaError: 'timeout' } });
    expect(failed.content).to.equal('[图片]\nhttp://mmbiz/pic.jpg');
    expect(failed.source.mediaError).to.equal('timeout');
  });

  it('voice: uses Recognition as the content', () => {
    const xml = head('voice', '<MediaId><![CDATA[m2]]></MediaId><Format><![CDATA[amr]]></Format><Recognition><![CDATA[路灯坏了]]></Recognition>');
    const inb = toInbound(parsePush(xml), { raw: xml, encrypted: true });
    expect(inb.content).to.equal('路灯坏了');
    expect(inb.source).to.include({ format: 'amr', recognition: '路灯坏了', encrypted: true });
    const bare = head('voice', '<MediaId><![CDATA[m2]]></MediaId><Format><![CDATA[amr]]></Format>');
    expect(toInbound(parsePush(bare), { raw: bare, encrypted: false }).content).to.equal('[语音]');
  });

  it('location: Location_X is latitude, Location_Y longitude, Label the address', () => {
    const xml = head(
      'location',
      '<Location_X>23.134521</Location_X><Location_Y>113.358803</Location_Y><Scale>20</Scale><Label><![CDATA[广州市天河区]]></Label>',
    );
    const inb = toInbound(parsePush(xml), { raw: xml, encrypted: false });
    expect(inb.location).to.deep.equal({ lat: 23.134521, lon: 113.358803, address: '广州市天河区' });
    expect(inb.content).to.equal('广州市天河区');
    const bad = head('location', '<Location_X>200</Location_X><Location_Y>x</Location_Y>');
    expect(toInbound(parsePush(bad), { raw: bad, encrypted: false }).location).to.equal(null);
  });

  it('link, video and shortvideo', () => {
    const link = head('link', '<Title><![CDATA[标题]]></Title><Description><![CDATA[描述]]></Description><Url><![CDATA[http://x/y]]></Url>');
    expect(toInbound(parsePush(link), { raw: link, encrypted: false }).content).to.equal('标题\n描述\nhttp://x/y');
    for (const t of ['video', 'shortvideo']) {
      const v = head(t, '<MediaId><![CDATA[v1]]></MediaId><ThumbMediaId><![CDATA[t1]]></ThumbMediaId>');
      const inb = toInbound(parsePush(v), { raw: v, encrypted: false });
      expect(inb.source).to.include({ mediaId: 'v1', thumbMediaId: 't1' });
      expect(mediaToFetch(parsePush(v))).to.equal(null);
    }
  });

  it('events are classified and deduped by FromUserName + CreateTime', () => {
    const xml = head('event', '<Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[qrscene_1]]></EventKey>', null);
    const push = parsePush(xml);
    expect(classify(push)).to.deep.equal({ kind: 'event', event: 'subscribe' });
    expect(dedupeKeyFor(push)).to.equal('oUser_openid:1763877600');
  });

  it('unknown MsgType is unsupported', () => {
    expect(classify(parsePush(head('miniprogrampage', '')))).to.deep.equal({ kind: 'unsupported', msgType: 'miniprogrampage' });
  });

  it('rejects malformed XML and missing fields', () => {
    expect(() => parsePush('<xml><ToUserName>')).to.throw(/well-formed/);
    expect(() => parsePush('{"json":true}')).to.throw();
    expect(() => parsePush('<xml><ToUserName>a</ToUserName></xml>')).to.throw(/required/);
    expect(() => parsePush('<other/>')).to.throw(/root/);
  });

  it('reads the safe-mode envelope', () => {
    expect(parseEnvelope('<xml><ToUserName><![CDATA[gh_1]]></ToUserName><Encrypt><![CDATA[abc==]]></Encrypt></xml>')).to.deep.equal({
      toUserName: 'gh_1',
      encrypt: 'abc==',
    });
    expect(() => parseEnvelope('<xml><ToUserName>gh</ToUserName></xml>')).to.throw(/Encrypt/);
  });

  it('builds passive replies that parse back, even with ]]> in the text', () => {
    const xml = textReplyXml({ toUser: 'oUser', fromUser: 'gh_1', content: 'a]]>b 工单号20261123-000001', createTime: 1763877600.7 });
    const p = new XMLParser({ parseTagValue: false }).parse(xml).xml;
    expect(p).to.deep.equal({ ToUserName: 'oUser', FromUserName: 'gh_1', CreateTime: '1763877600', MsgType: 'text', Content: 'a]]>b 工单号20261123-000001' });
    const enc = new XMLParser({ parseTagValue: false }).parse(encryptedReplyXml({ encrypt: 'E', signature: 'S', timestamp: '1', nonce: 'N' })).xml;
    expect(enc).to.deep.equal({ Encrypt: 'E', MsgSignature: 'S', TimeStamp: '1', Nonce: 'N' });
    expect(cdata('x')).to.equal('<![CDATA[x]]>');
  });

  it('a CreateTime beyond year 9999 gives no sentAt (it could not be written as an ISO date)', () => {
    const xml = '<xml><ToUserName>gh</ToUserName><FromUserName>o1</FromUserName><CreateTime>290000000000</CreateTime><MsgType>text</MsgType><Content>x</Content></xml>';
    expect(toInbound(parsePush(xml), { raw: xml, encrypted: false }).sentAt).to.equal(null);
  });

  it('names downloaded media', () => {
    expect(mediaFileName('m1', 'voice', null, null, '../x')).to.equal('m1.x');
    expect(mediaFileName('m1', 'image', 'image/jpeg', 'attachment; filename="%E4%B8"')).to.equal('%E4%B8');
    expect(mediaFileName('m1', 'image', 'image/jpeg', 'attachment; filename="../../etc/passwd"')).to.equal('_.._etc_passwd');
    expect(mediaFileName('m1', 'image', 'image/jpeg', 'attachment; filename=".."')).to.equal('m1.jpg');
    expect(mediaFileName('m1', 'image', 'image/png', null)).to.equal('m1.png');
    expect(mediaFileName('m1', 'image', null, 'attachment; filename="abc.jpg"')).to.equal('abc.jpg');
    expect(mediaFileName('m/1', 'voice', 'application/octet-stream', null, 'speex')).to.equal('m_1.speex');
  });
});
