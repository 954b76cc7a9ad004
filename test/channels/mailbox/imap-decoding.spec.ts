import { expect } from 'chai';
import { startDovecot, type Dovecot } from '../../support/dovecot.js';
import { startTestGateway, type TestGateway } from '../../support/gateway.js';
import type { Received } from '../../support/rabbit.js';
import { TICKETED_FLAG } from '../../../src/channels/mailbox/imap.js';
import {
  gbkMail,
  inlineTextFileMail,
  INLINE_FILE_NAME,
  INLINE_FILE_TEXT,
  latin1HeaderMail,
  rawByteInWordMail,
  uniqueId,
  unlabelledGbkMail,
  utf7Mail,
  UTF7_NAME,
  UTF7_SUBJECT,
  UTF7_TEXT,
} from '../../fixtures/mail/build.js';
import { waitForFlag } from './helpers.js';

/**
 * Mail that a MIME parser misreads out of the box, through the real path: APPEND
 * to a private Dovecot's INBOX, the gateway reads it over IMAP, and the ticket on
 * `tickets.created` has the right subject, sender name, content and attachments.
 */
describe('mailbox channel: decoding awkward mail end to end (Dovecot, RabbitMQ)', function () {
  this.timeout(60_000);
  let dovecot: Dovecot;
  let tg: TestGateway;

  const byMessageId = (id: string) => (m: Received) => m.body.source?.messageId === id;
  async function ticketFor(raw: (messageId: string) => Buffer, tag: string): Promise<Received['body']> {
    const messageId = uniqueId(tag);
    const uid = (await dovecot.append(raw(messageId)))!;
    const [m] = await tg.created.waitFor(byMessageId(messageId));
    await waitForFlag(dovecot, uid, TICKETED_FLAG);
    return m!.body;
  }

  before(async () => {
    dovecot = await startDovecot();
    tg = await startTestGateway({ IMAP_URL: dovecot.url, IMAP_POLL_INTERVAL: '5s', IMAP_RECONNECT_MAX: '1s' });
  });
  after(async () => {
    await tg?.stop();
    await dovecot?.stop();
  });

  for (const charset of ['unicode-1-1-utf-7', 'utf-7'] as const) {
    it(`Outlook 2000 UTF-7 (${charset}) in Subject, From and body`, async () => {
      const t = await ticketFor((messageId) => utf7Mail({ messageId, charset, splitWord: charset === 'utf-7' }), 'utf7');
      expect(t.subject).to.equal(UTF7_SUBJECT);
      expect(t.citizen.name).to.equal(UTF7_NAME);
      expect(t.content).to.equal(UTF7_TEXT);
    });
  }

  it('raw 8-bit bytes inside ISO-8859-1 Q encoded words', async () => {
    const t = await ticketFor((messageId) => rawByteInWordMail({ messageId }), 'rawword');
    expect(t.subject).to.equal('Frösche im Teich');
    expect(t.citizen.name).to.equal('Håvard Nilsen');
    expect(JSON.stringify(t)).not.to.contain('ï¿½');
  });

  it('unlabelled 8-bit Subject and From name next to an ISO-8859-1 body; unlabelled GBK still GB18030', async () => {
    const t = await ticketFor((messageId) => latin1HeaderMail({ messageId }), 'latin1');
    expect(t.subject).to.equal('Frösche');
    expect(t.citizen.name).to.equal('Håvard Nilsen');
    expect(t.content).to.equal('Die Frösche im Teich am Stadtpark sind nachts sehr laut.');
    const zh = await ticketFor((messageId) => unlabelledGbkMail({ messageId }), 'gbk-raw');
    expect(zh.subject).to.equal('楼下饭店油烟太大');
    expect(zh.citizen.name).to.equal('李四');
    const labelled = await ticketFor((messageId) => gbkMail({ messageId }), 'gbk');
    expect(labelled.subject).to.equal('小区停电了，请尽快处理');
  });

  it('an inline text file named with RFC 2231 continuations is an attachment, not content', async () => {
    const t = await ticketFor((messageId) => inlineTextFileMail({ messageId }), 'inline');
    expect(t.content).to.equal('领导您好：停电的详细情况写在附件里，请查收。');
    expect(t.attachments).to.have.length(1);
    expect(t.attachments[0]).to.include({ fileName: INLINE_FILE_NAME, mimeType: 'text/plain', size: Buffer.byteLength(INLINE_FILE_TEXT) });
  });
});
