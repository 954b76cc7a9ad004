import { expect } from 'chai';
import { startSmtpSink, type SmtpSink } from '../../support/smtp-sink.js';
import { startTestGateway, type TestGateway } from '../../support/gateway.js';
import { launchBrowser, type TestBrowser } from '../../support/browser.js';
import { publishJson } from '../../support/rabbit.js';
import { QUEUES } from '../../../src/publish/topology.js';
import { fakeJpeg } from '../../fixtures/mail/build.js';
import { MAILBOX_ADDRESS } from './helpers.js';

/** A fresh form: the CSRF cookie it set, its token and nonce. */
async function openForm(baseUrl: string): Promise<{ cookie: string; csrf: string; nonce: string }> {
  const res = await fetch(`${baseUrl}/mailbox`);
  expect(res.status).to.equal(200);
  const html = await res.text();
  const cookie = (res.headers.get('set-cookie') ?? '').split(';')[0]!;
  const csrf = /name="csrf" value="([^"]+)"/.exec(html)![1]!;
  const nonce = /name="nonce" value="([^"]+)"/.exec(html)![1]!;
  return { cookie, csrf, nonce };
}

function formData(fields: Record<string, string>, files: { name: string; type: string; data: Buffer }[] = []): FormData {
  const fd = new FormData();
  for (const [k, v] of Object.entries(fields)) fd.append(k, v);
  for (const f of files) fd.append('attachments', new Blob([f.data], { type: f.type }), f.name);
  return fd;
}

describe('mailbox channel: web form (headless Chromium, no JavaScript)', function () {
  this.timeout(90_000);
  let sink: SmtpSink;
  let tg: TestGateway;
  let browser: TestBrowser;

  before(async () => {
    sink = await startSmtpSink();
    tg = await startTestGateway({ SMTP_URL: sink.url, MAILBOX_ADDRESS, FORM_RATE_LIMIT: 20 });
    browser = await launchBrowser({ javaScript: false });
  });
  after(async () => {
    await browser?.close();
    await tg?.stop();
    await sink?.stop();
  });

  it('fill, submit, see the number and code, look the ticket up (screenshots kept)', async () => {
    const page = await browser.newPage();
    await page.goto(`${tg.baseUrl}/mailbox`);
    expect(await page.getAttribute('html', 'lang')).to.equal('zh-CN');
    expect(await page.title()).to.contain('市长信箱');
    // Every input has a label.
    for (const id of ['name', 'phone', 'email', 'subject', 'content', 'attachments']) {
      expect(await page.locator(`label[for="${id}"]`).count(), `label for ${id}`).to.equal(1);
    }
    await browser.screenshot(page, 'mailbox-form');

    await page.getByLabel('姓名（选填）').fill('王小明');
    await page.getByLabel('联系电话（选填）').fill('13800138000');
    await page.getByLabel('电子邮箱（选填）').fill('wxm@citizen.example.cn');
    await page.getByLabel('标题（必填）').fill('工地夜间施工噪音扰民');
    await page.getByLabel('诉求内容（必填）').fill('幸福路12号工地每晚十一点后仍在施工，噪音很大，影响休息。');
    await page.setInputFiles('#attachments', [{ name: '现场照片.jpg', mimeType: 'image/jpeg', buffer: fakeJpeg('form-photo') }]);
    await page.getByRole('button', { name: '提交' }).click();
    await page.waitForSelector('#ticket-number');
    const number = (await page.textContent('#ticket-number'))!.trim();
    const code = (await page.textContent('#lookup-code'))!.trim();
    expect(number).to.match(/^\d{8}-\d{6}$/);
    expect(code).to.match(/^[A-Z2-9]{8}$/);
    await browser.screenshot(page, 'mailbox-submitted');

    const [m] = await tg.created.waitFor((x) => x.body.number === number);
    const t = m!.body;
    expect(t.channel).to.equal('mailbox');
    expect(t.deadline.policy).to.equal('mailbox');
    expect(t.subject).to.equal('工地夜间施工噪音扰民');
    expect(t.citizen).to.deep.equal({ channelUserId: 'wxm@citizen.example.cn', phone: '13800138000', email: 'wxm@citizen.example.cn', name: '王小明' });
    expect(t.attachments[0]).to.include({ fileName: '现场照片.jpg', mimeType: 'image/jpeg', size: fakeJpeg('form-photo').length });
    expect(t.source).to.include({ via: 'web' });
    // The page was the receipt; the e-mail receipt goes out as well.
    await tg.events.waitFor((e) => e.routingKey === 'ticket.acknowledged.mailbox' && e.body.ticketId === t.id);
    const mail = await sink.waitFor((x) => x.parsed.text?.includes(number) ?? false);
    expect(mail.parsed.text).to.contain(code);

    await page.click('#status-link');
    await page.waitForSelector('#ticket-state');
    expect((await page.textContent('#ticket-number'))!.trim()).to.equal(number);
    expect(await page.textContent('#ticket-state')).to.contain('已受理');
    await browser.screenshot(page, 'mailbox-status');

    // A downstream answer shows on the status page.
    await publishJson(tg.amqpUrl, QUEUES.replies, { ticketId: t.id, replyId: `form-${t.id}`, text: '已通知城管部门夜间巡查。' });
    await tg.events.waitFor((e) => e.routingKey === 'ticket.responded.mailbox' && e.body.ticketId === t.id);

    // Look-up through the form, with the code typed in lower case and a dash.
    await page.goto(`${tg.baseUrl}/mailbox/status`);
    await browser.screenshot(page, 'mailbox-lookup');
    await page.getByLabel('工单号').fill(number);
    await page.getByLabel('查询码').fill(`${code.slice(0, 4).toLowerCase()}-${code.slice(4)}`);
    await page.getByRole('button', { name: '查询' }).click();
    await page.waitForSelector('#ticket-state');
    expect(await page.textContent('#ticket-state')).to.equal('已答复');
    expect(await page.textContent('#replies')).to.contain('已通知城管部门夜间巡查。');
    await browser.screenshot(page, 'mailbox-status-answered');

    // A wrong code shows nothing of the ticket.
    const resp = await page.goto(`${tg.baseUrl}/mailbox/status?number=${number}&code=AAAAAAAA`);
    expect(resp!.status()).to.equal(404);
    expect(await page.content()).not.to.contain('工地夜间施工');
    await browser.screenshot(page, 'mailbox-status-not-found');
    await page.close();
  });

  it('shows field errors in Chinese and keeps what was typed', async () => {
    const page = await browser.newPage();
    await page.goto(`${tg.baseUrl}/mailbox`);
    await page.getByLabel('电子邮箱（选填）').fill('not-an-address');
    await page.getByLabel('标题（必填）').fill('标题');
    // Bypass the browser's own `required` check to see the server's answer.
    await page.$eval('form', (f) => f.setAttribute('novalidate', ''));
    await page.getByRole('button', { name: '提交' }).click();
    await page.waitForSelector('#error-summary');
    const summary = await page.textContent('#error-summary');
    expect(summary).to.contain('电子邮箱格式不正确').and.contain('请填写诉求内容');
    expect(await page.inputValue('#subject')).to.equal('标题');
    expect(await page.getAttribute('#email', 'aria-invalid')).to.equal('true');
    await browser.screenshot(page, 'mailbox-form-errors');
    await page.close();
  });

  it('a double submit (same nonce) is one ticket', async () => {
    const { cookie, csrf, nonce } = await openForm(tg.baseUrl);
    const fields = { csrf, nonce, subject: '重复提交', content: '同一个表单提交了两次' };
    const r1 = await fetch(`${tg.baseUrl}/mailbox`, { method: 'POST', headers: { cookie }, body: formData(fields) });
    const r2 = await fetch(`${tg.baseUrl}/mailbox`, { method: 'POST', headers: { cookie }, body: formData(fields) });
    expect(r1.status).to.equal(201);
    expect(r2.status).to.equal(200);
    const n1 = /id="ticket-number">([^<]+)</.exec(await r1.text())![1];
    const n2 = /id="ticket-number">([^<]+)</.exec(await r2.text())![1];
    expect(n1).to.equal(n2);
    await tg.created.waitFor((x) => x.body.number === n1);
    expect(await tg.created.settle((x) => x.body.subject === '重复提交', 500)).to.have.length(1);
  });

  it('refuses a post without the CSRF cookie or with a forged token', async () => {
    const { cookie, nonce } = await openForm(tg.baseUrl);
    const noCookie = await fetch(`${tg.baseUrl}/mailbox`, { method: 'POST', body: formData({ csrf: 'x', nonce, subject: 's', content: 'c' }) });
    expect(noCookie.status).to.equal(403);
    const forged = await fetch(`${tg.baseUrl}/mailbox`, { method: 'POST', headers: { cookie }, body: formData({ csrf: 'forged-token-value', nonce, subject: 's', content: 'c' }) });
    expect(forged.status).to.equal(403);
    expect(await forged.text()).to.contain('页面已过期');
  });

  it('the same nonce with a different letter shows nothing of the first ticket', async () => {
    const { cookie, csrf, nonce } = await openForm(tg.baseUrl);
    const r1 = await fetch(`${tg.baseUrl}/mailbox`, { method: 'POST', headers: { cookie }, body: formData({ csrf, nonce, subject: '第一封信', content: '内容一' }) });
    expect(r1.status).to.equal(201);
    const number = /id="ticket-number">([^<]+)</.exec(await r1.text())![1]!;
    const r2 = await fetch(`${tg.baseUrl}/mailbox`, { method: 'POST', headers: { cookie }, body: formData({ csrf, nonce, subject: '另一封信', content: '内容二' }) });
    expect(r2.status).to.equal(409);
    const html = await r2.text();
    expect(html).not.to.contain(number);
    expect(html).not.to.contain('lookup-code');
  });

  it('refuses other content types (415) and oversized attachments (413, no ticket)', async () => {
    const r = await fetch(`${tg.baseUrl}/mailbox`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(r.status).to.equal(415);

    await tg.restart({ HTTP_BODY_LIMIT: 50_000 });
    const { cookie, csrf, nonce } = await openForm(tg.baseUrl);
    const big = await fetch(`${tg.baseUrl}/mailbox`, {
      method: 'POST',
      headers: { cookie },
      body: formData({ csrf, nonce, subject: '超大附件', content: '附件太大' }, [{ name: '大照片.jpg', type: 'image/jpeg', data: Buffer.alloc(60_000, 1) }]),
    });
    expect(big.status).to.equal(413);
    expect(await big.text()).to.contain('单个附件不能超过');
    expect(await tg.created.settle((x) => x.body.subject === '超大附件', 300)).to.have.length(0);
  });

  it('promises an e-mail answer only when SMTP is on; without it, points to the status page', async () => {
    const withMail = await (await fetch(`${tg.baseUrl}/mailbox`)).text();
    expect(withMail).to.contain('受理回执和答复也会发送到此邮箱');
    expect(await (await fetch(`${tg.baseUrl}/mailbox/status`)).text()).to.contain('也写在受理回执邮件里');

    const noMail = await startTestGateway({}, { noCollectors: true });
    try {
      const page = await browser.newPage();
      await page.goto(`${noMail.baseUrl}/mailbox`);
      const hint = await page.textContent('#email-hint');
      expect(hint).to.contain('答复不通过邮件发送').and.contain('办理进度查询页面');
      expect(await page.content()).not.to.contain('发送到此邮箱');
      expect(await page.textContent('main p')).to.contain('查询办理进度和答复');
      await browser.screenshot(page, 'mailbox-form-no-smtp');
      await page.goto(`${noMail.baseUrl}/mailbox/status`);
      expect(await page.textContent('#code-hint')).to.equal('提交信件后页面上显示的8位查询码。');
      await page.close();
    } finally {
      await noMail.stop();
    }
  });

  it('limits submissions per IP per minute: 429 with Retry-After', async () => {
    await tg.restart({ FORM_RATE_LIMIT: 2 });
    const { cookie, csrf } = await openForm(tg.baseUrl);
    const statuses: number[] = [];
    let retryAfter: string | null = null;
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${tg.baseUrl}/mailbox`, {
        method: 'POST',
        headers: { cookie },
        body: formData({ csrf, nonce: `rate-limit-nonce-${i}-abcdef`, subject: `限流${i}`, content: '测试' }),
      });
      statuses.push(res.status);
      if (res.status === 429) retryAfter = res.headers.get('retry-after');
    }
    expect(statuses).to.deep.equal([201, 201, 429]);
    expect(Number(retryAfter)).to.be.within(1, 60);
  });
});
