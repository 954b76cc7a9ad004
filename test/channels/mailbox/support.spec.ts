import { expect } from 'chai';
import { createServer, type Server } from 'node:http';
import { existsSync } from 'node:fs';
import nodemailer from 'nodemailer';
import { startDovecot, type Dovecot } from '../../support/dovecot.js';
import { startSmtpSink, type SmtpSink } from '../../support/smtp-sink.js';
import { launchBrowser, type TestBrowser } from '../../support/browser.js';

describe('mailbox test support (Dovecot, SMTP sink, Chromium)', function () {
  this.timeout(60_000);
  let dovecot: Dovecot | undefined;
  let sink: SmtpSink | undefined;
  let browser: TestBrowser | undefined;
  let http: Server | undefined;

  after(async () => {
    await dovecot?.stop();
    await sink?.stop();
    await browser?.close();
    if (http) await new Promise((r) => http!.close(r));
  });

  it('runs a private Dovecot that takes APPEND and reports flags', async () => {
    dovecot = await startDovecot();
    const uid = await dovecot.append('From: a@example.org\r\nSubject: hi\r\nMessage-ID: <s1@example.org>\r\n\r\nhello\r\n');
    expect(uid).to.equal(1);
    expect(await dovecot.count()).to.equal(1);
    const c = await dovecot.client();
    await c.mailboxOpen('INBOX');
    let closed = false;
    c.on('close', () => (closed = true));
    expect(await dovecot.kick()).to.equal(true);
    for (let i = 0; i < 50 && !closed; i++) await new Promise((r) => setTimeout(r, 50));
    expect(closed).to.equal(true);
    await dovecot.stop();
    expect(() => process.kill(dovecot!.pid, 0)).to.throw();
  });

  it('captures mail at the SMTP sink and injects failures', async () => {
    sink = await startSmtpSink();
    const t = nodemailer.createTransport(sink.url);
    await t.sendMail({ from: 'gw@example.org', to: 'c@example.org', subject: '回执', text: '您好' });
    const m = await sink.waitFor((x) => x.parsed.subject === '回执');
    expect(m.to).to.deep.equal(['c@example.org']);
    sink.failNext(451, 'Try again later');
    const err = await t.sendMail({ from: 'gw@example.org', to: 'c@example.org', text: 'x' }).catch((e: unknown) => e);
    expect((err as { responseCode?: number }).responseCode).to.equal(451);
    t.close();
  });

  it('drives headless Chromium and keeps a screenshot', async () => {
    http = createServer((_req, res) => {
      res.setHeader('content-type', 'text/html; charset=utf-8');
      res.end('<!doctype html><html lang="zh-CN"><title>测试</title><h1>市长信箱</h1></html>');
    });
    await new Promise<void>((r) => http!.listen(0, '127.0.0.1', () => r()));
    const addr = http.address();
    const port = typeof addr === 'object' && addr ? addr.port : 0;
    browser = await launchBrowser();
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${port}/`);
    expect(await page.textContent('h1')).to.equal('市长信箱');
    const path = await browser.screenshot(page, 'mailbox-support-smoke');
    expect(existsSync(path)).to.equal(true);
  });
});
