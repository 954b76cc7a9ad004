import { expect } from 'chai';
import amqp from 'amqplib';
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../../src/config.js';
import { TEST_DOWNSTREAM_KEY, startTestGateway, tempDir, waitUntil, type TestGateway } from '../support/gateway.js';

/**
 * examples/consumer.ts as a separate process against a running gateway and a
 * real broker: a ticket posted on the app API is printed, answered, and
 * `responded`; the same message republished is handled once, also after a
 * restart of the consumer (its seen-file).
 */

interface Consumer {
  child: ChildProcess;
  output: () => string;
  lines: (prefix: string) => string[];
  stop(): Promise<void>;
}

async function startConsumer(tg: TestGateway, seenFile: string): Promise<Consumer> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'examples/consumer.ts', '--prefetch', '5', '--seen-file', seenFile], {
    cwd: projectRoot(),
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root', AMQP_URL: tg.amqpUrl, GATEWAY_URL: tg.baseUrl, DOWNSTREAM_KEY: TEST_DOWNSTREAM_KEY },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const c: Consumer = {
    child,
    output: () => out,
    lines: (prefix) => out.split('\n').filter((l) => l.startsWith(prefix)),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
  await waitUntil(() => out.includes('consuming tickets.created') || child.exitCode !== null, 30_000, 'the consumer to start').catch(() => {});
  if (!out.includes('consuming tickets.created')) {
    await c.stop();
    throw new Error(`consumer did not start:\n${out}`);
  }
  return c;
}

describe('examples/consumer.ts (end to end)', function () {
  this.timeout(120_000);
  let tg: TestGateway;
  let consumer: Consumer | null = null;
  const dir = tempDir('consumer-');
  const seenFile = join(dir, 'seen.txt');

  before(async () => {
    // No test collectors: they would compete with the consumer for the same queues.
    tg = await startTestGateway({}, { noCollectors: true });
    consumer = await startConsumer(tg, seenFile);
  });
  after(async () => {
    await consumer?.stop();
    await tg?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  let ticket: { id: string; number: string };

  it('prints a ticket posted on the app API, replies, and the ticket becomes responded', async () => {
    const r = await tg.post('/api/v1/tickets', { clientMessageId: `consumer-${Date.now()}`, citizen: { phone: '13800138000' }, content: '小区门口路灯不亮，晚上很危险' });
    expect(r.status).to.equal(202);
    ticket = (await r.json()) as { id: string; number: string };
    const c = consumer!;
    await waitUntil(() => c.lines(`ticket ${ticket.number} `).length === 1, 20_000, 'the ticket line');
    expect(c.lines(`ticket ${ticket.number} `)[0]).to.equal(`ticket ${ticket.number} app/help id=${ticket.id} "小区门口路灯不亮，晚上很危险"`);
    await waitUntil(async () => {
      const s = (await (await tg.get(`/api/v1/tickets/${ticket.id}/status`)).json()) as { state: string };
      return s.state === 'responded';
    }, 20_000, 'responded');
    const status = (await (await tg.get(`/api/v1/tickets/${ticket.id}/status`)).json()) as { state: string; replies: { replyId: string; text: string; state: string }[] };
    expect(status.replies).to.have.length(1);
    expect(status.replies[0]).to.include({ replyId: 'first-answer', state: 'sent' });
    expect(status.replies[0]!.text).to.contain('承办部门');
    await waitUntil(() => c.lines(`event ticket.responded.app ${ticket.number}`).length === 1, 20_000, 'the responded event line');
    expect(c.lines(`event ticket.acknowledged.app ${ticket.number}`)).to.have.length(1);
    expect(c.lines(`replied ${ticket.number} `)).to.deep.equal([`replied ${ticket.number} (new)`]);
  });

  const republish = async () => {
    // The gateway's own ticket, as it would come again after a crash: same body, same messageId.
    const t = (await (await tg.get(`/api/v1/tickets/${ticket.id}`)).json()) as { channel: string; category: string };
    const conn = await amqp.connect(tg.amqpUrl);
    const ch = await conn.createConfirmChannel();
    const key = `ticket.created.${t.channel}.${t.category}`;
    ch.publish('tickets', key, Buffer.from(JSON.stringify(t)), { persistent: true, messageId: ticket.id, contentType: 'application/json', type: 'ticket.created' });
    await ch.waitForConfirms();
    await conn.close();
  };

  it('the same message republished is handled once', async () => {
    await republish();
    const c = consumer!;
    await waitUntil(() => c.output().includes(`duplicate ${ticket.id} on tickets.created: skipped`), 20_000, 'the duplicate line');
    expect(c.lines(`ticket ${ticket.number} `)).to.have.length(1);
    expect(c.lines(`replied ${ticket.number} `)).to.have.length(1);
    const status = (await (await tg.get(`/api/v1/tickets/${ticket.id}/status`)).json()) as { replies: unknown[] };
    expect(status.replies).to.have.length(1);
  });

  it('and still once after the consumer restarts (the seen-file)', async () => {
    await consumer!.stop();
    consumer = await startConsumer(tg, seenFile);
    await republish();
    const c = consumer;
    await waitUntil(() => c.output().includes(`duplicate ${ticket.id} on tickets.created: skipped`), 20_000, 'the duplicate line after restart');
    expect(c.lines(`ticket ${ticket.number} `)).to.have.length(0);
  });
});
