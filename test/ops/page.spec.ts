import { expect } from 'chai';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { createLogger } from '../../src/log.js';
import { projectRoot } from '../../src/config.js';
import { launchBrowser, type TestBrowser } from '../support/browser.js';
import { PrivateRabbit } from '../support/private-rabbit.js';
import { startTestGateway, waitBrokerUp, type TestGateway } from '../support/gateway.js';

const OPS_USER = 'duty';
const OPS_PASSWORD = 'correct-horse-battery';

/**
 * The operations page in Chromium, on a gateway whose broker is a private
 * RabbitMQ node the test stops: the page must follow the gateway without a
 * reload (tickets counted, deadlines open, the broker going down).
 */
describe('operations page in Chromium', function () {
  this.timeout(180_000);
  let rabbit: PrivateRabbit;
  let tg: TestGateway;
  let browser: TestBrowser;
  let page: Page;

  before(async function () {
    if (!PrivateRabbit.available()) this.skip();
    rabbit = new PrivateRabbit();
    await rabbit.startNode();
    // Warnings are kept (for the page's error list) but written nowhere: the test output stays quiet.
    const logger = createLogger('warn', { write: () => true });
    tg = await startTestGateway({ AMQP_URL: rabbit.url, OPS_USERS: `${OPS_USER}:${OPS_PASSWORD}` }, { noCollectors: true, logger });
    await waitBrokerUp(tg.gateway, 30_000);
    browser = await launchBrowser();
    page = await browser.newPage();
  });

  after(async () => {
    await browser?.close();
    await tg?.stop();
    await rabbit?.dispose();
  });

  const cell = (channel: string, cls: string) => page.locator(`tr[data-channel="${channel}"] td.${cls}`);
  /** Waits until `pred` holds for the text the page shows at `selector` (updated by the stream, never by a reload). */
  async function shows(selector: string, pred: (text: string) => boolean, timeoutMs = 15_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < until) {
      last = (await page.locator(selector).first().textContent({ timeout: 1000 }).catch(() => null)) ?? '';
      if (pred(last)) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`${selector} still shows ${JSON.stringify(last)}`);
  }

  it('answers 401 without the operator name and password', async () => {
    // Headless Chromium has no one to ask for a password: it gives up on the challenge,
    // so the navigation fails and the 401 is seen as the response it got.
    const statuses: number[] = [];
    page.on('response', (r) => statuses.push(r.status()));
    await page.goto(`${tg.baseUrl}/ops`).catch(() => undefined);
    expect(statuses).to.deep.equal([401]);
    page.removeAllListeners('response');
  });

  it('loads with basic auth, counts new tickets and shows the broker going down, without a reload', async () => {
    await browser.context.setExtraHTTPHeaders({ authorization: `Basic ${Buffer.from(`${OPS_USER}:${OPS_PASSWORD}`).toString('base64')}` });
    const r = await page.goto(`${tg.baseUrl}/ops`);
    expect(r?.status()).to.equal(200);
    await page.locator('#live.ok').waitFor({ timeout: 15_000 });
    expect(await page.locator('#broker-state').textContent()).to.equal('up');
    expect(await cell('app', 'received-hour').textContent()).to.equal('0');
    let navigations = 0;
    page.on('framenavigated', () => navigations++);

    for (let i = 0; i < 3; i++) {
      const res = await tg.post('/api/v1/tickets', { clientMessageId: `ops-${i}`, content: `路灯不亮了，第${i + 1}次反映`, citizen: { phone: '13800138000' } });
      expect(res.status).to.equal(202);
    }
    await shows('tr[data-channel="app"] td.received-hour', (t) => t === '3');
    await shows('#dl-open', (t) => t === '3');
    expect(await cell('app', 'received-minute').textContent()).to.equal('3');

    // A warning with a citizen's number in it reaches the page masked, as in the log.
    tg.gateway.logger.warn({ code: 'SEND_FAILED' }, 'receipt to 13800138000 refused by the SMSC');
    await shows('#errors', (t) => t.includes('138****8000'));
    expect(await page.locator('#errors').textContent()).not.to.contain('13800138000');

    await rabbit.stopNode();
    await shows('#broker-state', (t) => t === 'down', 30_000);
    // Tickets taken while the broker is away wait in the outbox; the page shows the backlog.
    for (let i = 3; i < 5; i++) {
      expect((await tg.post('/api/v1/tickets', { clientMessageId: `ops-${i}`, content: '小区门口垃圾没人清运' })).status).to.equal(202);
    }
    await shows('#outbox-depth', (t) => Number(t) >= 2);
    await shows('#broker-error', (t) => t !== '', 30_000);
    expect(await cell('app', 'received-hour').textContent()).to.equal('5');
    expect(navigations).to.equal(0);

    // test-artifacts/ops.png; the README's docs/ops.png is a copy of it from a run of this test.
    const shot = await browser.screenshot(page, 'ops');
    expect(shot).to.equal(join(projectRoot(), 'test-artifacts', 'ops.png'));
  });
});
