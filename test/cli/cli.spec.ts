import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { projectRoot } from '../../src/config.js';
import { freePort, startTestGateway, waitUntil, type StoreChoice, type TestGateway } from '../support/gateway.js';
import { TestSmsc } from '../support/smsc.js';
import { startSmtpSink, type SmtpSink } from '../support/smtp-sink.js';
import { startFakeTelegram, type FakeTelegram } from '../support/fake-telegram.js';

/**
 * `intake-gateway` as an operator runs it: a child process started through the
 * package's bin launcher, with the environment the gateway was configured with,
 * next to a running gateway (on SQLite, where both processes share the data
 * directory's file, and on PostgreSQL).
 */

const BIN = join(projectRoot(), 'bin', 'intake-gateway.mjs');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runCli(args: string[], env: Record<string, string>, timeoutMs = 45_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: projectRoot(),
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`intake-gateway ${args.join(' ')} did not finish:\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The settings the test gateway was started with, as environment variables. */
function envOf(tg: TestGateway, extra: Record<string, string> = {}): Record<string, string> {
  const c = tg.gateway.config;
  const env: Record<string, string> = { AMQP_URL: c.AMQP_URL, DATA_DIR: c.DATA_DIR, STORE_SYNC: c.STORE_SYNC, LOG_LEVEL: 'silent' };
  if (c.DATABASE_URL) env.DATABASE_URL = c.DATABASE_URL;
  return { ...env, ...extra };
}

async function createTicket(tg: TestGateway, content: string): Promise<{ id: string; number: string }> {
  const res = await tg.post('/api/v1/tickets', { clientMessageId: `cli-${randomUUID()}`, content });
  expect(res.status).to.equal(202);
  return (await res.json()) as { id: string; number: string };
}

/** A port nothing listens on (taken, then released). */
const closedPort = () => freePort();

describe('command line: doctor', function () {
  this.timeout(120_000);
  const TG_TOKEN = '123456:doctor-bot-token-abcdef';
  let smsc: TestSmsc;
  let sink: SmtpSink;
  let telegram: FakeTelegram;
  let tg: TestGateway;
  let env: Record<string, string>;

  before(async () => {
    smsc = await TestSmsc.start({ password: 'smpp-pass-77' });
    sink = await startSmtpSink({ password: 'smtp-pass-88' });
    telegram = await startFakeTelegram({ token: TG_TOKEN, maxPollSeconds: 1 });
    const channels = {
      SMPP_URL: smsc.url,
      SMTP_URL: sink.url,
      MAILBOX_ADDRESS: 'mayor@city.example',
      TELEGRAM_BOT_TOKEN: TG_TOKEN,
      TELEGRAM_API_URL: telegram.url,
      TELEGRAM_POLL_TIMEOUT: '1s',
    };
    tg = await startTestGateway(channels);
    env = envOf(tg, channels);
  });
  after(async () => {
    await tg?.stop();
    await telegram?.close();
    await sink?.stop();
    smsc?.server.close();
  });

  it('passes every check with everything up, one line each, secrets masked', async () => {
    const r = await runCli(['doctor'], env);
    expect(r.code, r.stdout + r.stderr).to.equal(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).to.match(/^ok   config     /);
    expect(r.stdout).to.match(/^ok   store      sqlite .+ \(write probe \d+ ms/m);
    expect(r.stdout).to.match(/^ok   broker     amqp:\/\/[^:]+:\*\*\*@127\.0\.0\.1:5672\/\S+ \(connected \d+ ms\)$/m);
    expect(r.stdout).to.match(/^ok   sms        smpp:\/\/hotline:\*\*\*@127\.0\.0\.1:\d+ bound as transceiver \(TESTSMSC\)/m);
    expect(r.stdout).to.match(/^ok   smtp       smtp:\/\/gateway:\*\*\*@127\.0\.0\.1:\d+ greeted/m);
    expect(r.stdout).to.match(/^ok   telegram   http:\/\/127\.0\.0\.1:\d+ getMe: @/m);
    for (const skipped of ['imap', 'wechat', 'weibo']) expect(r.stdout).to.match(new RegExp(`^skip ${skipped} +\\S+ is not set`, 'm'));
    expect(lines).to.have.length(9);
    for (const secret of ['smpp-pass-77', 'smtp-pass-88', TG_TOKEN, 'guest:guest']) expect(r.stdout).not.to.include(secret);
    // The doctor's bind ended with an unbind, and the gateway still takes input.
    expect(smsc.unbindsReceived).to.be.at.least(1);
    expect((await fetch(`${tg.baseUrl}/readyz`)).status).to.equal(200);
  });

  it('fails with exit 1 and the masked reason when the broker port is wrong', async () => {
    const port = await closedPort();
    const r = await runCli(['doctor'], { ...env, AMQP_URL: `amqp://guest:guest@127.0.0.1:${port}` });
    expect(r.code).to.equal(1);
    expect(r.stdout).to.match(new RegExp(`^FAIL broker     amqp://guest:\\*\\*\\*@127\\.0\\.0\\.1:${port} ECONNREFUSED `, 'm'));
    expect(r.stdout).to.match(/^ok   store /m);
    expect(r.stdout).not.to.include('guest:guest');
  });

  it('fails with exit 1 when SMPP_URL points at a closed port', async () => {
    const port = await closedPort();
    const r = await runCli(['doctor'], { ...env, SMPP_URL: `smpp://hotline:smpp-pass-77@127.0.0.1:${port}` });
    expect(r.code).to.equal(1);
    expect(r.stdout).to.match(new RegExp(`^FAIL sms        ECONNREFUSED smpp://hotline:\\*\\*\\*@127\\.0\\.0\\.1:${port} `, 'm'));
    expect(r.stdout).to.match(/^ok   broker /m);
    expect(r.stdout).not.to.include('smpp-pass-77');
  });

  it('names a refused bind', async () => {
    const r = await runCli(['doctor'], { ...env, SMPP_URL: smsc.url.replace('smpp-pass-77', 'wrong-pass') });
    expect(r.code).to.equal(1);
    expect(r.stdout).to.match(/^FAIL sms        smpp:\/\/hotline:\*\*\*@127\.0\.0\.1:\d+ refused bind_transceiver: ESME_RBINDFAIL$/m);
  });

  it('reports an invalid configuration as a failed check, masked', async () => {
    const r = await runCli(['doctor'], { ...env, AMQP_URL: 'http://guest:hunter22@127.0.0.1:5672' });
    expect(r.code).to.equal(1);
    expect(r.stdout).to.match(/^FAIL config     invalid configuration: AMQP_URL = /m);
    expect(r.stdout).not.to.include('hunter22');
  });

  it('--help lists the commands; an unknown command is a usage error', async () => {
    const help = await runCli(['--help'], {});
    expect(help.code).to.equal(0);
    for (const c of ['doctor', 'ticket <id|number>', 'replay --since', 'outbox']) expect(help.stdout).to.include(c);
    const bad = await runCli(['frobnicate'], env);
    expect(bad.code).to.equal(2);
    expect(bad.stderr).to.include('unknown command');
  });
});

for (const storeKind of ['sqlite', 'postgres'] as StoreChoice[]) {
  describe(`command line on a running gateway (${storeKind})`, function () {
    this.timeout(120_000);
    let tg: TestGateway;
    let env: Record<string, string>;
    before(async () => {
      tg = await startTestGateway({}, { storeKind });
      env = envOf(tg);
    });
    after(async () => {
      await tg?.stop();
    });

    it('ticket shows a ticket by id and by number, with its replies', async () => {
      const t = await createTicket(tg, '路灯不亮，请派人修理');
      const reply = await tg.post(`/api/v1/tickets/${t.id}/replies`, { replyId: 'r-cli-1', text: '已派人处理' });
      expect(reply.status).to.equal(202);
      await waitUntil(async () => ((await (await tg.get(`/api/v1/tickets/${t.id}/status`)).json()) as { state: string }).state === 'responded', 15_000, 'the reply sent');

      const byId = await runCli(['ticket', t.id, '--json'], env);
      expect(byId.code, byId.stderr).to.equal(0);
      const v = JSON.parse(byId.stdout) as {
        summary: Record<string, unknown>;
        ticket: { id: string; content: string };
        replies: { id: string; state: string; attempts: number; sentAt: string | null; via: string | null }[];
      };
      expect(v.summary).to.include({ id: t.id, number: t.number, channel: 'app', state: 'responded', breached: false });
      expect(v.summary.respondedAt).to.be.a('string');
      expect(v.ticket).to.include({ id: t.id, content: '路灯不亮，请派人修理' });
      expect(v.replies).to.have.length(1);
      expect(v.replies[0]).to.include({ state: 'sent', attempts: 1, via: 'app-poll' });
      expect(v.replies[0]!.sentAt).to.be.a('string');

      const byNumber = await runCli(['ticket', t.number], env);
      expect(byNumber.code, byNumber.stderr).to.equal(0);
      const lines = byNumber.stdout.split('\n');
      expect(lines[0]).to.equal(`number         ${t.number}`);
      expect(byNumber.stdout).to.include(`id             ${t.id}`);
      expect(byNumber.stdout).to.match(/^state +responded$/m);
      expect(byNumber.stdout).to.match(/^replies \(1\)$/m);
      expect(byNumber.stdout).to.include('"content": "路灯不亮，请派人修理"');

      const none = await runCli(['ticket', '20000101-999999'], env);
      expect(none.code).to.equal(1);
      expect(none.stderr).to.include('no ticket 20000101-999999');
    });

    it('replay publishes ticket.created again with the same messageIds', async () => {
      const a = await createTicket(tg, '小区垃圾无人清运');
      const b = await createTicket(tg, '噪音扰民，请处理');
      const ids = [a.id, b.id];
      await tg.created.waitFor((m) => ids.includes(m.properties.messageId as string), 2);

      const dry = await runCli(['replay', '--since', '10m', '--dry-run'], env);
      expect(dry.code, dry.stderr).to.equal(0);
      expect(dry.stdout).to.match(/^would queue \d+ ticket\.created messages/);

      const r = await runCli(['replay', '--since', '10m', '--channel', 'app', '--json'], env);
      expect(r.code, r.stderr).to.equal(0);
      const out = JSON.parse(r.stdout) as { queued: number; channel: string };
      expect(out.channel).to.equal('app');
      expect(out.queued).to.be.at.least(2);
      // The running gateway's relay publishes them: each id arrives a second time, with the same routing.
      const again = await tg.created.waitFor((m) => ids.includes(m.properties.messageId as string), 4, 20_000);
      for (const id of ids) {
        const copies = again.filter((m) => m.properties.messageId === id);
        expect(copies).to.have.length(2);
        expect(copies[1]!.routingKey).to.equal(copies[0]!.routingKey);
        expect(copies[1]!.body).to.deep.equal(copies[0]!.body);
      }

      const nothing = await runCli(['replay', '--since', '2020-01-01T00:00:00Z', '--until', '2020-01-02T00:00:00Z'], env);
      expect(nothing.code).to.equal(0);
      expect(nothing.stdout).to.match(/^queued 0 ticket\.created messages/);
      const bad = await runCli(['replay', '--since', 'yesterday'], env);
      expect(bad.code).to.equal(2);
      expect(bad.stderr).to.include('--since "yesterday"');
    });
  });

  describe(`command line: outbox while the broker is unreachable (${storeKind})`, function () {
    this.timeout(120_000);
    let tg: TestGateway;
    let env: Record<string, string>;
    before(async () => {
      const port = await closedPort();
      tg = await startTestGateway({ AMQP_URL: `amqp://guest:guest@127.0.0.1:${port}` }, { storeKind, noCollectors: true });
      env = envOf(tg);
    });
    after(async () => {
      await tg?.stop();
    });

    it('shows the depth, the oldest row and that it waits for the broker', async () => {
      const empty = await runCli(['outbox', '--json'], env);
      expect(empty.code, empty.stderr).to.equal(0);
      expect(JSON.parse(empty.stdout)).to.include({ depth: 0, oldestAt: null });

      await createTicket(tg, '楼道灯坏了');
      await createTicket(tg, '路面塌陷');
      const r = await runCli(['outbox', '--json', '--url', tg.baseUrl], env);
      expect(r.code, r.stderr).to.equal(0);
      const v = JSON.parse(r.stdout) as { depth: number; oldestRoutingKey: string; oldestAgeMs: number; lapsed: number; waitsFor: string; gateway: { broker: string } };
      // Each ticket.created, and the ticket.acknowledged of the app's in-band receipt.
      expect(v.depth).to.equal(4);
      expect(v.oldestRoutingKey).to.match(/^ticket\.created\.app\./);
      expect(v.oldestAgeMs).to.be.at.least(0);
      expect(v.lapsed).to.equal(0);
      expect(v.gateway.broker).to.equal('down');
      expect(v.waitsFor).to.match(/^the broker: no node answers this machine \(amqp:\/\/guest:\*\*\*@127\.0\.0\.1:\d+ ECONNREFUSED/);

      const text = await runCli(['outbox'], env);
      expect(text.code).to.equal(0);
      expect(text.stdout).to.match(/^depth      4 \((sqlite|postgres)\)$/m);
      expect(text.stdout).to.match(/^oldest     \d+ s old, ticket\.created\.app\.\S+ \(journaled /m);
      expect(text.stdout).to.match(/^waits for  the broker: /m);
      expect(text.stdout).not.to.include('guest:guest');
    });
  });
}
