import { expect } from 'chai';
import { composeMail, classifySmtpError, outboundMessageId, replySubject, recipientOf } from './smtp.js';
import type { OutboundMessage } from '../types.js';

const from = { name: '12345市长信箱', address: 'mayor@city.example.gov.cn' };

function msg(o: Partial<OutboundMessage> = {}): OutboundMessage {
  return {
    id: 'receipt:0f0e0d0c-0000-5000-8000-000000000001',
    kind: 'receipt',
    channel: 'mailbox',
    text: '【12345】您的诉求已受理，工单号20261123-000001，我们将在24小时内回复。',
    ticketId: '0f0e0d0c-0000-5000-8000-000000000001',
    ticketNumber: '20261123-000001',
    citizen: { channelUserId: 'zs@citizen.example.cn', phone: null, email: 'ZS@citizen.example.cn', name: '张三' },
    subject: '小区停电了',
    source: { via: 'imap', messageId: '<c1@citizen.example.cn>', references: ['<c0@citizen.example.cn>'], replyTo: null },
    threadIds: [],
    attempt: 1,
    ...o,
  };
}

describe('mailbox/smtp: composing receipts and replies', () => {
  it('threads the receipt to the citizen mail and carries the ticket number in the subject', () => {
    const m = composeMail(msg(), from, '查询码：ABCDEFGH')!;
    expect(m.to).to.equal('ZS@citizen.example.cn');
    expect(m.subject).to.equal('Re: 小区停电了 [工单号 20261123-000001]');
    expect(m.inReplyTo).to.equal('<c1@citizen.example.cn>');
    expect(m.references).to.deep.equal(['<c0@citizen.example.cn>', '<c1@citizen.example.cn>']);
    expect(m.text).to.match(/24小时内回复。\n\n查询码：ABCDEFGH$/);
    expect(m.headers).to.deep.include({ 'Auto-Submitted': 'auto-replied', 'X-12345-Ticket': '20261123-000001' });
    expect(m.messageId).to.match(/^<[0-9a-f]{32}\.12345@city\.example\.gov\.cn>$/);
  });

  it('a downstream reply is not marked automatic and references earlier outgoing mail', () => {
    const m = composeMail(msg({ id: 'reply:r1', kind: 'reply', threadIds: ['<receipt@city.example.gov.cn>', 'smpp-id-1'] }), from, null)!;
    expect(m.headers['Auto-Submitted']).to.equal(undefined);
    expect(m.references).to.deep.equal(['<c0@citizen.example.cn>', '<c1@citizen.example.cn>', '<receipt@city.example.gov.cn>']);
  });

  it('answers Reply-To when the citizen set one', () => {
    expect(recipientOf(msg({ source: { replyTo: 'other@citizen.example.cn' } }))).to.equal('other@citizen.example.cn');
    expect(composeMail(msg({ citizen: { channelUserId: 'web:x', phone: null, email: null, name: null }, source: { via: 'web' } }), from, null)).to.equal(null);
  });

  it('subjects: one Re:, the number once, a fallback when there is no subject', () => {
    expect(replySubject('Re: 回复: 噪音 [工单号 20261123-000001]', '20261123-000001')).to.equal('Re: 噪音 [工单号 20261123-000001]');
    expect(replySubject(null, '20261123-000002')).to.equal('Re: 12345市长信箱 [工单号 20261123-000002]');
    expect(replySubject('问题', null)).to.equal('Re: 问题');
  });

  it('Message-IDs are stable per outbound id', () => {
    expect(outboundMessageId('receipt:a', 'x@y.cn')).to.equal(outboundMessageId('receipt:a', 'x@y.cn'));
    expect(outboundMessageId('receipt:a', 'x@y.cn')).not.to.equal(outboundMessageId('receipt:b', 'x@y.cn'));
  });

  it('classifies SMTP failures: 5xx permanent with the server answer, 4xx and network errors transient', () => {
    const p = classifySmtpError({ code: 'EENVELOPE', responseCode: 550, response: '550 5.1.1 Mailbox unavailable', command: 'RCPT TO' });
    expect(p.code).to.equal('SEND_PERMANENT');
    expect(p.transient).to.equal(false);
    expect(p.detail).to.deep.equal({ code: 'EENVELOPE', responseCode: 550, response: '550 5.1.1 Mailbox unavailable', command: 'RCPT TO' });
    const t = classifySmtpError({ code: 'EMESSAGE', responseCode: 451, response: '451 4.3.0 Try later' });
    expect(t.code).to.equal('SEND_TRANSIENT');
    expect(t.transient).to.equal(true);
    const c = classifySmtpError(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ESOCKET' }));
    expect(c.code).to.equal('SEND_TRANSIENT');
  });
});
