import { expect } from 'chai';
import { startDovecot } from '../../support/dovecot.js';
import { startTestGateway, type TestGateway } from '../../support/gateway.js';
import type { Received } from '../../support/rabbit.js';
import { TICKETED_FLAG, REJECTED_FLAG } from '../../../src/channels/mailbox/imap.js';
import { gbkMail, uniqueId } from '../../fixtures/mail/build.js';
import { waitForFlag, sleep } from './helpers.js';

const byMessageId = (id: string) => (m: Received) => m.body.source?.messageId === id;

function imapStatus(tg: TestGateway): { state: string; paused: boolean; uidValidity: string | null } {
  const a = tg.gateway.adapters.find((x) => x.channel === 'mailbox')!;
  return a.status!().imap as { state: string; paused: boolean; uidValidity: string | null };
}

describe('mailbox channel: IMAP edge cases', function () {
  this.timeout(60_000);
  const cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    while (cleanup.length) await cleanup.pop()!().catch(() => undefined);
  });

  it('polls with NOOP when the server has no IDLE', async () => {
    const dovecot = await startDovecot({ noIdle: true });
    cleanup.push(() => dovecot.stop());
    const c = await dovecot.client();
    expect(c.capabilities.has('IDLE')).to.equal(false);
    await c.logout();
    const tg = await startTestGateway({ IMAP_URL: dovecot.url, IMAP_POLL_INTERVAL: '1s' });
    cleanup.push(() => tg.stop());
    const id = uniqueId('noidle');
    const uid = (await dovecot.append(gbkMail({ messageId: id })))!;
    await tg.created.waitFor(byMessageId(id));
    await waitForFlag(dovecot, uid, TICKETED_FLAG);
  });

  it('mail over MAIL_MAX_BYTES becomes a clear rejected-input record, flagged, never a ticket', async () => {
    const dovecot = await startDovecot();
    cleanup.push(() => dovecot.stop());
    const tg = await startTestGateway({ IMAP_URL: dovecot.url, MAIL_MAX_BYTES: 4096 });
    cleanup.push(() => tg.stop());
    const id = uniqueId('big');
    const big = gbkMail({ messageId: id, attachments: [{ fileName: '大文件.bin', mimeType: 'application/octet-stream', data: Buffer.alloc(20_000, 7) }] });
    const uid = (await dovecot.append(big))!;
    const [r] = await tg.rejected.waitFor((m) => m.body.channel === 'mailbox' && m.body.reason === 'too_large');
    expect(r!.body.detail).to.contain(`mail is ${big.length} bytes, MAIL_MAX_BYTES is 4096`);
    expect(r!.body.raw).to.be.a('string').and.not.equal('');
    await waitForFlag(dovecot, uid, REJECTED_FLAG);
    expect(tg.created.messages.some(byMessageId(id))).to.equal(false);
  });

  it('pauses fetching while the outbox backlog is high', async () => {
    const dovecot = await startDovecot();
    cleanup.push(() => dovecot.stop());
    // Broker unreachable: tickets stay in the outbox, which soon passes the high-water mark.
    const tg = await startTestGateway({ IMAP_URL: dovecot.url, OUTBOX_HIGH_WATER: 1, AMQP_URL: 'amqp://guest:guest@127.0.0.1:1' }, { noCollectors: true });
    cleanup.push(() => tg.stop());
    const uids: number[] = [];
    for (let i = 0; i < 3; i++) uids.push((await dovecot.append(gbkMail({ messageId: uniqueId(`backlog-${i}`) })))!);
    // The first ticket alone takes the outbox over 1 (ticket.created, and reply.failed
    // for the receipt: no SMTP here); the intake pauses before the next mail.
    await waitForFlag(dovecot, uids[0]!, TICKETED_FLAG);
    const until = Date.now() + 10_000;
    while (!imapStatus(tg).paused && Date.now() < until) await sleep(50);
    expect(imapStatus(tg).paused).to.equal(true);
    await sleep(1500);
    const flags = await dovecot.flags();
    expect(flags.get(uids[1]!)?.has(TICKETED_FLAG)).to.equal(false);
    expect(flags.get(uids[2]!)?.has(TICKETED_FLAG)).to.equal(false);
    const ready = (await (await fetch(`${tg.baseUrl}/readyz`)).json()) as { channels: { mailbox: { imap: { paused: boolean } } } };
    expect(ready.channels.mailbox.imap.paused).to.equal(true);
  });

  it('a UIDVALIDITY change re-reads the mailbox without a second ticket', async () => {
    const dovecot = await startDovecot();
    cleanup.push(() => dovecot.stop());
    const admin = await dovecot.client();
    cleanup.push(() => admin.logout().then(() => undefined));
    await admin.mailboxCreate('Letters');
    const a = gbkMail({ messageId: uniqueId('uv-a'), subject: '第一封' });
    const b = gbkMail({ messageId: uniqueId('uv-b'), subject: '第二封' });
    await dovecot.append(a, 'Letters');
    await dovecot.append(b, 'Letters');
    const url = dovecot.url.replace(/\/INBOX$/, '/Letters');
    const tg = await startTestGateway({ IMAP_URL: url, IMAP_RECONNECT_MAX: '500ms' });
    cleanup.push(() => tg.stop());
    await tg.created.waitFor((m) => ['第一封', '第二封'].includes(m.body.subject), 2);
    const uidValidity = async () => {
      const st = await admin.status('Letters', { uidValidity: true });
      return st ? String(st.uidValidity) : null;
    };
    const before = await uidValidity();

    // The mailbox is recreated (a restore, a migration): same mail, new UIDVALIDITY, no flags.
    await admin.mailboxDelete('Letters');
    await sleep(1100);
    await admin.mailboxCreate('Letters');
    const after = await uidValidity();
    expect(after).not.to.equal(before);
    const ua = (await dovecot.append(a, 'Letters'))!;
    const ub = (await dovecot.append(b, 'Letters'))!;
    const c = uniqueId('uv-c');
    await dovecot.append(gbkMail({ messageId: c, subject: '第三封' }), 'Letters');

    await tg.created.waitFor(byMessageId(c), 1, 20_000);
    const lock = await admin.getMailboxLock('Letters');
    const flags = new Map<number, Set<string>>();
    try {
      for await (const m of admin.fetch('1:*', { uid: true, flags: true })) flags.set(m.uid, m.flags ?? new Set());
    } finally {
      lock.release();
    }
    expect(flags.get(ua)?.has(TICKETED_FLAG)).to.equal(true);
    expect(flags.get(ub)?.has(TICKETED_FLAG)).to.equal(true);
    const all = await tg.created.settle((m) => ['第一封', '第二封'].includes(m.body.subject), 500);
    expect(all).to.have.length(2);
    expect(imapStatus(tg).uidValidity).to.equal(after);
  });
});
