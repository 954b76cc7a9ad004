import { runConformance } from './suite.js';
import { startTestGateway } from '../support/gateway.js';
import { startDovecot, type Dovecot } from '../support/dovecot.js';
import { startSmtpSink, type SmtpSink } from '../support/smtp-sink.js';
import { buildMail, autoReplyMail } from '../fixtures/mail/build.js';
import { TICKETED_FLAG } from '../../src/channels/mailbox/imap.js';
import { waitForFlag, MAILBOX_ADDRESS } from '../channels/mailbox/helpers.js';

interface Ctx {
  dovecot: Dovecot;
  sink: SmtpSink;
  sent: Map<string, Buffer>;
}

// The mailbox channel over real IMAP (Dovecot): "acked" is the mail flagged
// `\Seen $Ticketed`, which the gateway does only after the ticket is durable.
// A retry is the same message (same Message-ID) delivered into the mailbox again.
async function deliver(ctx: Ctx, raw: Buffer): Promise<{ acked: boolean }> {
  const uid = await ctx.dovecot.append(raw);
  if (uid === undefined) return { acked: false };
  await waitForFlag(ctx.dovecot, uid, TICKETED_FLAG, 20_000);
  return { acked: true };
}

runConformance<Ctx>({
  channel: 'mailbox',
  async setup(store) {
    const dovecot = await startDovecot();
    const sink = await startSmtpSink();
    const tg = await startTestGateway({ IMAP_URL: dovecot.url, SMTP_URL: sink.url, MAILBOX_ADDRESS, IMAP_RECONNECT_MAX: '1s' }, { storeKind: store });
    return { tg, ctx: { dovecot, sink, sent: new Map() } };
  },
  async send(ctx, marker) {
    const raw = buildMail({
      from: { name: '测试', address: 'conformance@citizen.example.cn' },
      subject: `路灯坏了 ${marker}`,
      charset: 'gbk',
      text: `经十路路灯坏了 ${marker}`,
      messageId: `<${marker}@citizen.example.cn>`,
    });
    ctx.sent.set(marker, raw);
    return deliver(ctx, raw);
  },
  async resend(ctx, marker) {
    return deliver(ctx, ctx.sent.get(marker)!);
  },
  async sendBad(ctx) {
    await ctx.dovecot.append(autoReplyMail());
    return {};
  },
  async teardown(ctx) {
    await ctx.sink.stop();
    await ctx.dovecot.stop();
  },
});
