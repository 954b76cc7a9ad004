import { expect } from 'chai';
import { startDovecot, type Dovecot } from '../../support/dovecot.js';
import { startSmtpSink, type SmtpSink } from '../../support/smtp-sink.js';
import { startTestGateway, type TestGateway } from '../../support/gateway.js';
import { publishJson, type Received } from '../../support/rabbit.js';
import { QUEUES } from '../../../src/publish/topology.js';
import { TICKETED_FLAG, REJECTED_FLAG } from '../../../src/channels/mailbox/imap.js';
import {
  gbkMail,
  big5Mail,
  htmlOnlyMail,
  autoReplyMail,
  dsnMail,
  replyMail,
  buildMail,
  uniqueId,
  fakeJpeg,
  fakePng,
} from '../../fixtures/mail/build.js';
import { waitForFlag, MAILBOX_ADDRESS, sleep } from './helpers.js';

/**
 * The mailbox channel end to end: a private Dovecot, the gateway (in process,
 * own vhost), RabbitMQ, and an SMTP sink that receives receipts and replies.
 */
describe('mailbox channel: IMAP in, SMTP out (Dovecot, RabbitMQ, smtp-server)', function () {
  this.timeout(60_000);
  let dovecot: Dovecot;
  let sink: SmtpSink;
  let tg: TestGateway;

  const byMessageId = (id: string) => (m: Received) => m.body.source?.messageId === id;
  const created = async (messageId: string): Promise<Received> => (await tg.created.waitFor(byMessageId(messageId)))[0]!;

  before(async () => {
    dovecot = await startDovecot();
    sink = await startSmtpSink();
    tg = await startTestGateway({
      IMAP_URL: dovecot.url,
      SMTP_URL: sink.url,
      MAILBOX_ADDRESS,
      IMAP_POLL_INTERVAL: '5s',
      IMAP_RECONNECT_MAX: '1s',
      PUBLIC_URL: 'https://12345.example.gov.cn',
    });
  });
  after(async () => {
    await tg?.stop();
    await sink?.stop();
    await dovecot?.stop();
  });

  it('GBK mail with a Chinese subject and attachment → one ticket, flagged, receipt threaded', async () => {
    const messageId = uniqueId('gbk');
    const uid = (await dovecot.append(gbkMail({ messageId })))!;
    const m = await created(messageId);
    const t = m.body;
    expect(t.channel).to.equal('mailbox');
    expect(t.subject).to.equal('小区停电了，请尽快处理');
    expect(t.content).to.contain('幸福路8号');
    expect(t.citizen).to.deep.equal({ channelUserId: 'zhangsan@citizen.example.cn', phone: null, email: 'ZhangSan@Citizen.Example.CN', name: '张三' });
    expect(t.deadline.policy).to.equal('mailbox');
    expect(t.deadline.duration).to.equal('PT24H');
    expect(t.attachments).to.have.length(1);
    expect(t.attachments[0]).to.include({ fileName: '现场照片.jpg', mimeType: 'image/jpeg', size: fakeJpeg('gbk-photo').length });
    expect(t.source).to.include({ messageId, uid, mailbox: 'INBOX' });
    expect(t.source.uidValidity).to.be.a('string');
    expect(t.channelMessageIds).to.deep.equal([messageId]);

    const flags = await waitForFlag(dovecot, uid, TICKETED_FLAG);
    expect(flags.has('\\Seen')).to.equal(true);
    expect(await dovecot.count()).to.be.greaterThan(0); // never deleted

    const receipt = await sink.waitFor((x) => x.header('in-reply-to') === messageId);
    expect(receipt.to.map((a) => a.toLowerCase())).to.deep.equal(['zhangsan@citizen.example.cn']);
    expect(receipt.header('to')).to.contain('ZhangSan@');
    expect(receipt.parsed.subject).to.equal(`Re: 小区停电了，请尽快处理 [工单号 ${t.number}]`);
    expect(receipt.parsed.text).to.contain(t.number).and.contain('24小时');
    expect(receipt.parsed.text).to.match(/查询码：[A-Z2-9]{8}/);
    expect(receipt.parsed.text).to.contain(`https://12345.example.gov.cn/mailbox/status?number=${t.number}&code=`);
    expect(receipt.header('references')).to.contain(messageId);
    expect(receipt.header('auto-submitted')).to.equal('auto-replied');
    expect(receipt.parsed.from?.value[0]?.address).to.equal(MAILBOX_ADDRESS);

    const ack = await tg.events.waitFor((e) => e.routingKey === 'ticket.acknowledged.mailbox' && e.body.ticketId === t.id);
    expect(ack[0]!.body.via).to.equal('smtp');
  });

  it('Big5 mail with a Chinese subject and attachment → correct ticket', async () => {
    const messageId = uniqueId('big5');
    await dovecot.append(big5Mail({ messageId }));
    const t = (await created(messageId)).body;
    expect(t.subject).to.equal('路燈壞了，晚上很危險');
    expect(t.citizen.name).to.equal('陳大文');
    expect(t.content).to.contain('經十路5號門口的路燈');
    expect(t.attachments[0]).to.include({ fileName: '路燈照片.png', mimeType: 'image/png', size: fakePng('big5-photo').length });
    // The core serves it content-addressed.
    expect(t.attachments[0].url).to.be.a('string').and.not.equal('');
  });

  it('HTML-only mail becomes clean text', async () => {
    const messageId = uniqueId('html');
    await dovecot.append(htmlOnlyMail({ messageId }));
    const t = (await created(messageId)).body;
    expect(t.content).to.contain('请问办理居住证需要哪些材料？').and.contain('身份证');
    expect(t.content).not.to.match(/<\w|alert\(/);
  });

  it('the same Message-ID twice is one ticket; both copies are flagged', async () => {
    const messageId = uniqueId('dup');
    const raw = gbkMail({ messageId, subject: '重复投递测试' });
    const uid1 = (await dovecot.append(raw))!;
    const uid2 = (await dovecot.append(raw))!;
    await created(messageId);
    await waitForFlag(dovecot, uid1, TICKETED_FLAG);
    await waitForFlag(dovecot, uid2, TICKETED_FLAG);
    const all = await tg.created.settle(byMessageId(messageId), 500);
    expect(all).to.have.length(1);
    const receipts = sink.mails.filter((x) => x.header('in-reply-to') === messageId);
    expect(receipts.length).to.be.at.most(1);
  });

  it('auto-replies and bounces are rejected: no ticket, no receipt', async () => {
    const auto = uniqueId('auto');
    const uidAuto = (await dovecot.append(autoReplyMail({ messageId: auto })))!;
    const uidDsn = (await dovecot.append(dsnMail()))!;
    const rejected = await tg.rejected.waitFor((r) => r.body.channel === 'mailbox' && ['auto_reply', 'bounce'].includes(r.body.reason), 2);
    expect(rejected.map((r) => r.body.reason)).to.include.members(['auto_reply', 'bounce']);
    expect(rejected.every((r) => r.routingKey === 'intake.rejected.mailbox')).to.equal(true);
    await waitForFlag(dovecot, uidAuto, REJECTED_FLAG);
    await waitForFlag(dovecot, uidDsn, REJECTED_FLAG);
    await sleep(500);
    expect(tg.created.messages.some(byMessageId(auto))).to.equal(false);
    expect(sink.mails.some((x) => x.header('in-reply-to') === auto || x.to.includes('someone@company.example.cn'))).to.equal(false);
  });

  it('an empty mail is rejected and the citizen is asked for details', async () => {
    const messageId = uniqueId('empty');
    const uid = (await dovecot.append(buildMail({ from: { address: 'empty@citizen.example.cn' }, text: '', messageId })))!;
    await tg.rejected.waitFor((r) => r.body.channel === 'mailbox' && r.body.reason === 'empty' && String(r.body.raw).includes(messageId));
    await waitForFlag(dovecot, uid, REJECTED_FLAG);
    const notice = await sink.waitFor((x) => x.to.includes('empty@citizen.example.cn'));
    expect(notice.parsed.text).to.contain('未收到您的诉求内容');
    expect(notice.header('in-reply-to')).to.equal(messageId);
    expect(tg.created.messages.some(byMessageId(messageId))).to.equal(false);
  });

  it('a reply to the receipt is a ticket.followup, not a new ticket', async () => {
    const messageId = uniqueId('orig');
    await dovecot.append(gbkMail({ messageId, subject: '噪音扰民，请处理' }));
    const t = (await created(messageId)).body;
    const receipt = await sink.waitFor((x) => x.header('in-reply-to') === messageId);
    const receiptId = receipt.header('message-id')!;

    const replyId = uniqueId('reply');
    await dovecot.append(replyMail({ inReplyTo: receiptId, references: [messageId, receiptId], subject: receipt.parsed.subject!, messageId: replyId }));
    const [f] = await tg.events.waitFor((e) => e.routingKey === 'ticket.followup.mailbox' && e.body.ticketId === t.id);
    expect(f!.body.content).to.equal('补充一下：停电的是3号楼和5号楼。');
    await sleep(500);
    expect(tg.created.messages.some(byMessageId(replyId))).to.equal(false);

    // A new mail naming only the ticket number in its subject adds to the same ticket.
    const byNumber = uniqueId('bynumber');
    await dovecot.append(buildMail({ from: { address: 'zhangsan@citizen.example.cn' }, subject: `关于工单${t.number}的补充`, text: '今天还在施工。', messageId: byNumber }));
    await tg.events.waitFor((e) => e.routingKey === 'ticket.followup.mailbox' && e.body.ticketId === t.id && e.body.content === '今天还在施工。');
    expect(tg.created.messages.some(byMessageId(byNumber))).to.equal(false);
  });

  it('a downstream reply goes out by SMTP threaded with the receipt', async () => {
    const messageId = uniqueId('answer');
    await dovecot.append(gbkMail({ messageId, subject: '路灯不亮' }));
    const t = (await created(messageId)).body;
    const receipt = await sink.waitFor((x) => x.header('in-reply-to') === messageId);
    await publishJson(tg.amqpUrl, QUEUES.replies, { ticketId: t.id, replyId: `r-${t.id}`, text: '您好，路灯已于今日修复。感谢您的来信。' });
    const reply = await sink.waitFor((x) => x.parsed.text?.includes('路灯已于今日修复') ?? false);
    expect(reply.header('in-reply-to')).to.equal(messageId);
    expect(reply.header('references')).to.contain(messageId).and.contain(receipt.header('message-id')!);
    expect(reply.parsed.subject).to.equal(`Re: 路灯不亮 [工单号 ${t.number}]`);
    expect(reply.header('auto-submitted')).to.equal(null);
    await tg.events.waitFor((e) => e.routingKey === 'ticket.responded.mailbox' && e.body.ticketId === t.id);
  });

  it('SMTP 4xx is retried, 5xx becomes reply.failed with the server answer', async () => {
    const messageId = uniqueId('smtp-fail');
    sink.failNext(451, '4.3.0 Temporary local problem');
    await dovecot.append(gbkMail({ messageId, subject: '临时失败测试' }));
    const t = (await created(messageId)).body;
    // The first attempt gets 451; the retry (backoff 1 s) gets through.
    await sink.waitFor((x) => x.header('in-reply-to') === messageId, 20_000);

    sink.failNext(550, '5.1.1 Mailbox unavailable');
    await publishJson(tg.amqpUrl, QUEUES.replies, { ticketId: t.id, replyId: `fail-${t.id}`, text: '这条答复会被拒收。' });
    const [failed] = await tg.repliesFailed.waitFor((m) => m.body.replyId === `fail-${t.id}`);
    expect(failed!.routingKey).to.equal('reply.failed.mailbox');
    expect(failed!.body.error.code).to.equal('SEND_PERMANENT');
    expect(JSON.stringify(failed!.body.error.detail)).to.contain('550').and.contain('Mailbox unavailable');
  });

  it('mail that arrives while the gateway is stopped is read at start, once', async () => {
    await tg.gateway.stop();
    const messageId = uniqueId('offline');
    const uid = (await dovecot.append(gbkMail({ messageId, subject: '离线期间的来信' })))!;
    expect((await dovecot.flags()).get(uid)?.has(TICKETED_FLAG)).to.equal(false);
    await tg.restart();
    await created(messageId);
    await waitForFlag(dovecot, uid, TICKETED_FLAG);
    // Restart again: nothing is read twice.
    const before = tg.created.messages.length;
    await tg.restart();
    const marker = uniqueId('after-restart');
    await dovecot.append(gbkMail({ messageId: marker, subject: '重启后的来信' }));
    await created(marker);
    expect(tg.created.messages.filter(byMessageId(messageId))).to.have.length(1);
    expect(tg.created.messages.length).to.equal(before + 1);
  });

  it('a killed IMAP connection reconnects and misses nothing', async () => {
    const adapter = tg.gateway.adapters.find((a) => a.channel === 'mailbox')!;
    const imapStatus = () => (adapter.status!().imap as { state: string; reconnects: number });
    await waitUntilConnected(imapStatus);
    const reconnectsBefore = imapStatus().reconnects;
    expect(await dovecot.kick()).to.equal(true);
    // Mail arriving right while the gateway is disconnected.
    const during = uniqueId('during-kick');
    await dovecot.append(gbkMail({ messageId: during, subject: '断线期间的来信' }));
    await created(during);
    expect(imapStatus().reconnects).to.be.greaterThan(reconnectsBefore);
    await waitUntilConnected(imapStatus);
    const after = uniqueId('after-kick');
    await dovecot.append(gbkMail({ messageId: after, subject: '重连后的来信' }));
    await created(after);
  });

  it('a breached mailbox deadline is published (DEADLINE_MAILBOX=2s)', async () => {
    await tg.restart({ DEADLINE_MAILBOX: '2s' });
    const messageId = uniqueId('deadline');
    await dovecot.append(gbkMail({ messageId, subject: '超期测试' }));
    const t = (await created(messageId)).body;
    expect(t.deadline.duration).to.equal('PT2S');
    const [breach] = await tg.events.waitFor((e) => e.routingKey === 'ticket.deadline.breached.mailbox' && e.body.ticketId === t.id, 1, 15_000);
    expect(breach!.body.ticketId).to.equal(t.id);
  });
});

async function waitUntilConnected(status: () => { state: string }, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (status().state !== 'connected') {
    if (Date.now() > until) throw new Error(`IMAP not connected: ${JSON.stringify(status())}`);
    await sleep(50);
  }
}
