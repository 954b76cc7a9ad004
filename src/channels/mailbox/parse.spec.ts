import { expect } from 'chai';
import iconv from 'iconv-lite';
import {
  parseMail,
  detectAutomated,
  stripQuoted,
  ticketNumbersIn,
  normalizeMessageId,
  formToInbound,
  FormInput,
  rawHash,
  prepareMime,
  type MailParseResult,
} from './parse.js';
import type { Inbound } from '../types.js';
import {
  buildMail,
  gbkMail,
  big5Mail,
  gb2312QMail,
  gb18030Mail,
  unlabelledGbkMail,
  htmlOnlyMail,
  autoReplyMail,
  dsnMail,
  replyMail,
  fakeJpeg,
  fakePng,
  utf7Mail,
  UTF7_SUBJECT,
  UTF7_NAME,
  UTF7_TEXT,
  rawByteInWordMail,
  latin1HeaderMail,
  inlineTextFileMail,
  INLINE_FILE_NAME,
  INLINE_FILE_TEXT,
  rfc2231Continuations,
} from '../../../test/fixtures/mail/build.js';

const origin = { mailbox: 'INBOX', uidValidity: '1700000000', uid: 7 };
const MAX = 1024 * 1024;

async function inbound(raw: Buffer): Promise<Inbound> {
  const r: MailParseResult = await parseMail(raw, origin, { maxBytes: MAX });
  if (r.kind !== 'inbound') throw new Error(`expected inbound, got ${r.reason}: ${r.detail}`);
  return r.inbound;
}

describe('mailbox/parse: charsets', () => {
  it('GBK (RFC 2047 B words, base64 body) with a GBK-named attachment', async () => {
    const msg = await inbound(gbkMail({ messageId: '<gbk-1@citizen.example.cn>' }));
    expect(msg.subject).to.equal('小区停电了，请尽快处理');
    expect(msg.citizen).to.deep.equal({
      channelUserId: 'zhangsan@citizen.example.cn',
      phone: null,
      email: 'ZhangSan@Citizen.Example.CN',
      name: '张三',
    });
    expect(msg.content).to.contain('幸福路8号').and.contain('请尽快处理');
    expect(msg.attachments).to.have.length(1);
    expect(msg.attachments[0]!.fileName).to.equal('现场照片.jpg');
    expect(msg.attachments[0]!.mimeType).to.equal('image/jpeg');
    expect(msg.attachments[0]!.data.equals(fakeJpeg('gbk-photo'))).to.equal(true);
    expect(msg.dedupeKey).to.equal('<gbk-1@citizen.example.cn>');
    expect(msg.channelMessageIds).to.deep.equal(['<gbk-1@citizen.example.cn>']);
    expect(msg.source).to.include({ messageId: '<gbk-1@citizen.example.cn>', uidValidity: '1700000000', uid: 7, mailbox: 'INBOX', via: 'imap' });
    expect(msg.sentAt?.toISOString()).to.equal('2026-11-23T08:30:00.000Z');
    expect(Buffer.isBuffer(msg.raw)).to.equal(true);
  });

  it('Big5 (traditional characters, 8-bit body) with a Big5-named attachment', async () => {
    const msg = await inbound(big5Mail());
    expect(msg.subject).to.equal('路燈壞了，晚上很危險');
    expect(msg.citizen.name).to.equal('陳大文');
    expect(msg.content).to.contain('經十路5號門口的路燈');
    expect(msg.attachments[0]!.fileName).to.equal('路燈照片.png');
    expect(msg.attachments[0]!.data.equals(fakePng('big5-photo'))).to.equal(true);
  });

  it('GB2312 label with Q-encoded words and a GBK-only character (镕)', async () => {
    const raw = buildMail({
      from: { name: '王五', address: 'wangwu@citizen.example.cn' },
      subject: '朱镕基路的建议',
      charset: 'gbk',
      headerEncoding: 'Q',
      transfer: 'quoted-printable',
      text: '建议在朱镕基路增设红绿灯。',
    });
    // Relabel as gb2312, as many clients do although the bytes are GBK.
    const relabelled = Buffer.from(raw.toString('latin1').replace(/=\?gbk\?/gi, '=?gb2312?').replace(/charset=gbk/gi, 'charset=gb2312'), 'latin1');
    const msg = await inbound(relabelled);
    expect(msg.subject).to.equal('朱镕基路的建议');
    expect(msg.content).to.equal('建议在朱镕基路增设红绿灯。');
    expect((await inbound(gb2312QMail())).subject).to.equal('建议在路口增设红绿灯');
  });

  it('GB18030 with a four-byte (astral) character', async () => {
    const msg = await inbound(gb18030Mail());
    expect(msg.subject).to.equal('生僻字𠀀的户口登记问题');
    expect(msg.citizen.name).to.equal('𠀀先生');
    expect(msg.content).to.contain('“𠀀”');
  });

  it('UTF-8 labelled and unlabelled ASCII/UTF-8 bodies are left alone', async () => {
    const msg = await inbound(buildMail({ from: { address: 'a@citizen.example.cn' }, subject: '路灯', charset: 'utf-8', text: '路灯坏了 ✓', labelBody: false }));
    expect(msg.subject).to.equal('路灯');
    expect(msg.content).to.equal('路灯坏了 ✓');
  });

  it('unlabelled 8-bit GBK in headers and body falls back to GB18030', async () => {
    const r = await parseMail(unlabelledGbkMail(), origin, { maxBytes: MAX });
    expect(r.kind).to.equal('inbound');
    if (r.kind !== 'inbound') return;
    expect(r.repairedCharset).to.equal('gb18030');
    expect(r.inbound.subject).to.equal('楼下饭店油烟太大');
    expect(r.inbound.citizen.name).to.equal('李四');
    expect(r.inbound.content).to.equal('楼下饭店油烟太大，晚上还很吵，我要投诉。');
    expect(r.inbound.content).not.to.contain('\uFFFD');
    // The archive keeps the bytes as received, not the repaired copy.
    expect((r.inbound.raw as Buffer).equals(unlabelledGbkMail())).to.equal(false); // new Message-ID each build
    expect((r.inbound.raw as Buffer).includes(iconv.encode('楼下饭店', 'gbk'))).to.equal(true);
  });

  it('raw 8-bit Big5 subject next to a big5-labelled body uses Big5', async () => {
    const raw = buildMail({
      from: { address: 'hk@citizen.example.hk' },
      subject: '垃圾站太臭',
      charset: 'big5',
      headerEncoding: 'raw',
      text: '垃圾站太臭了。',
    });
    const msg = await inbound(raw);
    expect(msg.subject).to.equal('垃圾站太臭');
  });
});

describe('mailbox/parse: mail that mailparser misreads out of the box', () => {
  async function result(raw: Buffer): Promise<Extract<MailParseResult, { kind: 'inbound' }>> {
    const r = await parseMail(raw, origin, { maxBytes: MAX });
    if (r.kind !== 'inbound') throw new Error(`expected inbound, got ${r.reason}: ${r.detail}`);
    return r;
  }

  for (const charset of ['unicode-1-1-utf-7', 'utf-7'] as const) {
    it(`UTF-7 (${charset}) encoded words in Subject and From, and a UTF-7 body`, async () => {
      const r = await result(utf7Mail({ charset }));
      expect(r.inbound.subject).to.equal(UTF7_SUBJECT);
      expect(r.inbound.citizen.name).to.equal(UTF7_NAME);
      expect(r.inbound.content).to.equal(UTF7_TEXT);
      expect(r.rewritten).to.include.members(['UTF-7 encoded words', 'UTF-7 text part']);
    });
  }

  it('UTF-7 words cut inside a shifted run decode as one', async () => {
    const raw = utf7Mail({ splitWord: true });
    expect(raw.toString('latin1')).to.match(/\?=\r\n =\?unicode-1-1-utf-7\?Q\?/);
    expect((await result(raw)).inbound.subject).to.equal(UTF7_SUBJECT);
    // Next to a word in another charset, each is decoded in its own.
    const mixed = Buffer.from(
      `From: a@citizen.example.cn\r\nSubject: =?gbk?B?${iconv.encode('路灯', 'gbk').toString('base64')}?= =?utf-7?Q?${iconv.encode('Frösche', 'utf7').toString()}?=\r\n\r\nx\r\n`,
    );
    expect((await result(mixed)).inbound.subject).to.equal('路灯Frösche');
  });

  it('UTF-7 in HTML is decoded, and the markup it spells is still stripped', async () => {
    const html = '<p>Lampe kaputt</p><script>alert(1)</script>';
    const raw = Buffer.from(
      `From: a@citizen.example.cn\r\nSubject: x\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-7\r\n\r\n${iconv.encode(html, 'utf7').toString('latin1')}\r\n`,
      'latin1',
    );
    const msg = (await result(raw)).inbound;
    expect(msg.content).to.equal('Lampe kaputt');
  });

  it('a raw 8-bit byte inside an ISO-8859-1 Q word is decoded in that charset, not as ï¿½', async () => {
    const r = await result(rawByteInWordMail());
    expect(r.inbound.subject).to.equal('Frösche im Teich');
    expect(r.inbound.citizen.name).to.equal('Håvard Nilsen');
    expect(r.inbound.content).to.equal('Die Frösche im Teich am Stadtpark sind zu laut.');
    expect(r.rewritten).to.deep.equal(['8-bit bytes in Q encoded words']);
    // The same for raw GBK inside a gbk word.
    const gbk = Buffer.concat([Buffer.from('From: a@citizen.example.cn\r\nSubject: =?gbk?Q?'), iconv.encode('路灯坏了', 'gbk'), Buffer.from('?=\r\n\r\nx\r\n')]);
    expect((await result(gbk)).inbound.subject).to.equal('路灯坏了');
  });

  it('unlabelled 8-bit Subject and From name in a mail whose body declares ISO-8859-1: read as ISO-8859-1, not GB18030', async () => {
    const r = await result(latin1HeaderMail());
    expect(r.inbound.subject).to.equal('Frösche');
    expect(r.inbound.citizen.name).to.equal('Håvard Nilsen');
    expect(r.inbound.content).to.equal('Die Frösche im Teich am Stadtpark sind nachts sehr laut.');
    // libmime's name for ISO-8859-1, as mailparser decodes the body with it too.
    expect(r.repairedCharset).to.equal('windows-1252');
  });

  it('a declared charset that cannot read the header is passed over for GB18030', async () => {
    // Raw GBK subject next to a Big5 body. The GBK bytes of 噪音扰民 are not valid Big5
    // (many GBK texts are, and then read as Big5: the declared charset comes first).
    const subject = '噪音扰民';
    expect(iconv.decode(iconv.encode(subject, 'gbk'), 'big5')).to.contain('\uFFFD');
    const raw = buildMail({ from: { address: 'a@citizen.example.cn' }, subject: 'x', charset: 'big5', text: '工地噪音。' });
    const fixed = Buffer.from(raw.toString('latin1').replace(/^Subject: .*$/m, `Subject: ${iconv.encode(subject, 'gbk').toString('latin1')}`), 'latin1');
    const r = await result(fixed);
    expect(r.inbound.content).to.equal('工地噪音。');
    expect(r.inbound.subject).to.equal(subject);
    expect(r.repairedCharset).to.equal('gb18030');
  });

  it('an inline text file named with RFC 2231 continuations stays an attachment, out of the content', async () => {
    const raw = inlineTextFileMail();
    expect(raw.toString('latin1')).to.contain(`Content-Disposition: inline;\r\n filename*0*=utf-8''`).and.contain('filename*1*=');
    const r = await result(raw);
    expect(r.inbound.content).to.equal('领导您好：停电的详细情况写在附件里，请查收。');
    expect(r.inbound.attachments).to.have.length(1);
    expect(r.inbound.attachments[0]).to.deep.include({ fileName: INLINE_FILE_NAME, mimeType: 'text/plain' });
    expect(r.inbound.attachments[0]!.data.toString('utf8')).to.equal(INLINE_FILE_TEXT);
    expect(r.rewritten).to.deep.equal(['named inline text part kept as an attachment']);
  });

  it('unnamed inline text parts, body alternatives and a named single-part mail are still the content', async () => {
    const parts = (second: string) =>
      Buffer.from(
        `From: a@citizen.example.cn\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n第一段\r\n--b\r\n${second}\r\n\r\n第二段\r\n--b--\r\n`,
        'utf8',
      );
    expect((await result(parts('Content-Type: text/plain; charset=utf-8\r\nContent-Disposition: inline'))).inbound.content).to.equal('第一段\n第二段');
    const alt = Buffer.from(
      `From: a@citizen.example.cn\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8; name=body.txt\r\n\r\n正文\r\n--b\r\nContent-Type: text/html; charset=utf-8; name=body.html\r\n\r\n<p>正文</p>\r\n--b--\r\n`,
      'utf8',
    );
    const a = (await result(alt)).inbound;
    expect(a.content).to.equal('正文');
    expect(a.attachments).to.have.length(0);
    const single = Buffer.from(`From: a@citizen.example.cn\r\nSubject: s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Disposition: inline; ${rfc2231Continuations('filename', '说明.txt')}\r\n\r\n正文\r\n`, 'utf8');
    expect((await result(single)).inbound.content).to.equal('正文');
  });

  it('mail with nothing to rewrite is parsed as received', async () => {
    expect(await prepareMime(gbkMail())).to.equal(null);
    expect(await prepareMime(unlabelledGbkMail())).to.equal(null);
    expect((await result(gbkMail())).rewritten).to.deep.equal([]);
  });
});

describe('mailbox/parse: HTML, quoting, ids', () => {
  it('HTML-only mail becomes clean text without scripts, styles or images', async () => {
    const msg = await inbound(htmlOnlyMail());
    expect(msg.content).to.contain('请问办理居住证需要哪些材料？');
    expect(msg.content).to.contain('身份证').and.contain('租房合同');
    expect(msg.content).to.contain('https://example.gov.cn/jzz');
    expect(msg.content).not.to.match(/alert|color:red|<\w+/);
  });

  it('prefers the text/plain alternative when both are present', async () => {
    const msg = await inbound(buildMail({ from: { address: 'a@citizen.example.cn' }, subject: 's', text: '纯文本版本', html: '<p>HTML版本</p>' }));
    expect(msg.content).to.equal('纯文本版本');
  });

  it('strips quoted earlier text from a reply and keeps the new text', async () => {
    const msg = await inbound(replyMail({ inReplyTo: '<receipt-1@gw.example>', subject: 'Re: 【12345】工单20261123-000001 小区停电' }));
    expect(msg.content).to.equal('补充一下：停电的是3号楼和5号楼。');
    expect(msg.threadRefs).to.include.members(['<receipt-1@gw.example>', '20261123-000001']);
    expect(msg.source).to.include({ inReplyTo: '<receipt-1@gw.example>' });
  });

  it('stripQuoted handles English, Outlook and Chinese attributions', () => {
    expect(stripQuoted('New info\n\nOn Mon, Nov 23, 2026 at 4:31 PM 12345 <m@x.cn> wrote:\n> old')).to.equal('New info');
    expect(stripQuoted('New info\nOn Mon, Nov 23, 2026 at 4:31 PM 12345 <m@x.cn>\nwrote:\n> old')).to.equal('New info');
    expect(stripQuoted('补充\n\n-----原始邮件-----\n发件人: 12345\n发送时间: 2026年11月23日\n主题: 回执')).to.equal('补充');
    expect(stripQuoted('More\n________________________________\nFrom: 12345\nSent: Monday\nTo: me\n')).to.equal('More');
    expect(stripQuoted('More\n\nFrom: 12345 <m@x.cn>\nSent: Monday\nSubject: receipt\n\nold text')).to.equal('More');
    expect(stripQuoted('补充内容\n\n张三 于2026年11月23日 16:31写道：\n旧内容')).to.equal('补充内容');
    expect(stripQuoted('text\n-- \nsignature')).to.equal('text');
    expect(stripQuoted('> only quoted')).to.equal('> only quoted');
  });

  it('does not strip a forwarded complaint from a fresh (non-reply) mail', async () => {
    const msg = await inbound(
      buildMail({ from: { address: 'a@citizen.example.cn' }, subject: '转给市长', text: '请看下面的投诉\n-----原始邮件-----\n物业不作为' }),
    );
    expect(msg.content).to.contain('物业不作为');
  });

  it('finds ticket numbers in subjects', () => {
    expect(ticketNumbersIn('Re: 工单20261123-000042补充')).to.deep.equal(['20261123-000042']);
    expect(ticketNumbersIn('工单 20261123-000042 与 20261124-1234567')).to.deep.equal(['20261123-000042', '20261124-1234567']);
    expect(ticketNumbersIn('电话 120261123-0000421')).to.deep.equal([]);
    expect(ticketNumbersIn(null)).to.deep.equal([]);
  });

  it('normalizes Message-IDs and hashes the raw mail when there is none', async () => {
    expect(normalizeMessageId('  <<a@b>> ')).to.equal('<a@b>');
    expect(normalizeMessageId('a@b')).to.equal('<a@b>');
    const raw = buildMail({ from: { address: 'a@citizen.example.cn' }, subject: '无ID', text: 'x', messageId: null });
    const msg = await inbound(raw);
    expect(msg.dedupeKey).to.equal(`sha256:${rawHash(raw)}`);
    expect(msg.channelMessageIds).to.deep.equal([]);
  });

  it('References become thread refs, Reply-To is kept for answers', async () => {
    const msg = await inbound(
      buildMail({
        from: { address: 'a@citizen.example.cn' },
        subject: 'x',
        text: 'y',
        references: ['<r1@x>', '<r2@x>'],
        extraHeaders: [['Reply-To', 'other@citizen.example.cn']],
      }),
    );
    expect(msg.threadRefs).to.include.members(['<r1@x>', '<r2@x>']);
    expect(msg.source).to.include({ replyTo: 'other@citizen.example.cn' });
  });
});

describe('mailbox/parse: rejects', () => {
  it('auto-replies never become tickets', async () => {
    for (const [name, value] of [
      ['Auto-Submitted', 'auto-replied'],
      ['Auto-Submitted', 'auto-generated; owner-email="x@y"'],
      ['Precedence', 'bulk'],
      ['Precedence', 'junk'],
      ['Precedence', 'list'],
      ['X-Autoreply', 'yes'],
    ] as const) {
      const r = await parseMail(autoReplyMail({ extraHeaders: [[name, value]] }), origin, { maxBytes: MAX });
      expect(r, `${name}: ${value}`).to.deep.include({ kind: 'reject', reason: 'auto_reply' });
    }
    expect(detectAutomated(autoReplyMail({ extraHeaders: [['Auto-Submitted', 'no']] }))).to.equal(null);
  });

  it('bounces: null sender, DSN, MAILER-DAEMON', async () => {
    const r = await parseMail(dsnMail(), origin, { maxBytes: MAX });
    expect(r).to.deep.include({ kind: 'reject', reason: 'bounce' });
    const dsnNoReturnPath = Buffer.from(dsnMail().toString('latin1').replace('Return-Path: <>\r\n', ''), 'latin1');
    expect(detectAutomated(dsnNoReturnPath)?.reason).to.equal('bounce');
    const nullSender = buildMail({ from: { address: 'x@citizen.example.cn' }, subject: 's', text: 't', extraHeaders: [['Return-Path', '<>']] });
    expect(detectAutomated(nullSender)).to.deep.equal({ reason: 'bounce', detail: 'null sender (Return-Path: <>)' });
  });

  it('read receipts (MDN) are automatic replies', () => {
    const raw = Buffer.from(
      'From: a@citizen.example.cn\r\nSubject: Read: x\r\nContent-Type: multipart/report; report-type=disposition-notification; boundary=b\r\n\r\n--b\r\n\r\nread\r\n--b--\r\n',
    );
    expect(detectAutomated(raw)?.reason).to.equal('auto_reply');
  });

  it('our own mail coming back is never a ticket (loop guard)', async () => {
    const raw = buildMail({ from: { address: 'Mayor@City.Example.gov.cn' }, subject: 'Re: x', text: '回执' });
    const r = await parseMail(raw, origin, { maxBytes: MAX, ownAddress: 'mayor@city.example.gov.cn' });
    expect(r).to.deep.include({ kind: 'reject', reason: 'auto_reply' });
  });

  it('a normal citizen mail is not automated', () => {
    expect(detectAutomated(gbkMail())).to.equal(null);
  });

  it('oversized mail is rejected with a clear reason', async () => {
    const raw = gbkMail();
    const r = await parseMail(raw, origin, { maxBytes: 100 });
    expect(r).to.deep.equal({ kind: 'reject', reason: 'too_large', detail: `mail is ${raw.length} bytes, MAIL_MAX_BYTES is 100` });
  });

  it('accepts internationalised sender addresses', async () => {
    const msg = await inbound(buildMail({ from: { name: '张三', address: '张三@例子.中国' }, subject: 's', text: 't' }));
    expect(msg.citizen.channelUserId).to.equal('张三@例子.中国');
  });

  it('mail without a usable From address is a parse_error', async () => {
    const r = await parseMail(Buffer.from('Subject: hi\r\nMessage-ID: <x@y>\r\n\r\nbody\r\n'), origin, { maxBytes: MAX });
    expect(r).to.deep.include({ kind: 'reject', reason: 'parse_error' });
  });

  it('garbage input never throws', async () => {
    for (const raw of [Buffer.alloc(0), Buffer.from([0xff, 0xfe, 0x00, 0x0a, 0x0d]), Buffer.from('\r\n\r\n\r\n')]) {
      const r = await parseMail(raw, origin, { maxBytes: MAX });
      expect(r.kind).to.equal('reject');
    }
  });
});

describe('mailbox/parse: web form', () => {
  const valid = { name: ' 张三 ', phone: '138 0013 8000', email: 'ZS@Citizen.Example.CN', subject: '噪音扰民', content: '工地夜间施工', nonce: 'abcdefghijklmnop1234' };

  it('turns a valid submission into an Inbound keyed by the nonce', () => {
    const input = FormInput.parse(valid);
    const msg = formToInbound(input, [{ fileName: '照片.jpg', mimeType: 'image/jpeg', data: fakeJpeg('f') }], new Date('2026-11-23T01:00:00Z'));
    expect(msg.dedupeKey).to.equal('form:abcdefghijklmnop1234');
    expect(msg.citizen).to.deep.equal({ channelUserId: 'zs@citizen.example.cn', phone: '13800138000', email: 'ZS@Citizen.Example.CN', name: '张三' });
    expect(msg.subject).to.equal('噪音扰民');
    expect(msg.attachments).to.have.length(1);
    expect(msg.source).to.include({ via: 'web', form: true });
    expect(JSON.parse(msg.raw as string)).to.include({ subject: '噪音扰民', nonce: 'abcdefghijklmnop1234' });
  });

  it('optional fields may be empty', () => {
    const input = FormInput.parse({ ...valid, name: '', phone: '', email: '' });
    const msg = formToInbound(input, [], new Date());
    expect(msg.citizen).to.deep.equal({ channelUserId: 'web:abcdefghijklmnop1234', phone: null, email: null, name: null });
  });

  it('reports invalid fields in Chinese', () => {
    const r = FormInput.safeParse({ ...valid, email: 'not-an-address', content: '  ', nonce: 'x' });
    expect(r.success).to.equal(false);
    const messages = r.success ? [] : r.error.issues.map((i) => i.message);
    expect(messages).to.include.members(['电子邮箱格式不正确', '请填写诉求内容', '表单已失效，请刷新页面后重新提交']);
  });
});
