import { randomBytes } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PrivateRabbit } from '../support/private-rabbit.js';
import { freePort, spawnGateway, tempDir, TEST_API_KEY, type GatewayProcess } from '../support/gateway.js';
import { TestSmsc, SERVICE_NUMBER, encodeText } from '../support/smsc.js';
import { dovecotAvailable, startDovecot, type Dovecot } from '../support/dovecot.js';
import { pushToWechat, startFakeWechat, textMessage, nextMsgId, type FakeWechat } from '../support/fake-wechat.js';
import { pushToWeibo, startFakeWeibo, weiboDate, weiboPushBody, type FakeWeibo } from '../support/fake-weibo.js';
import { makeUpdate, postWebhook, startFakeTelegram, type FakeTelegram } from '../support/fake-telegram.js';
import { QueueTap, type Tapped } from './tap.js';
import { mountReadOnlySwitchDir, type ReadOnlySwitchDir } from './rofs.js';

/**
 * The fault suite's driver: a mixed load over every intake channel (app API,
 * SMPP, IMAP, WeChat, Weibo and Telegram webhooks) against the gateway running
 * as its own process, while faults are injected; then a reconciliation of what
 * each upstream client got acknowledged against what reached `tickets.created`.
 *
 * Every message carries a unique marker in its content; reconciliation is by
 * marker. An upstream client behaves like the real one: it retries the very
 * same message (same clientMessageId, MsgId, update_id, PDU bytes, Message-ID)
 * until it is acknowledged, so a retry must map to the same ticket id.
 */

export type ChannelKey = 'app' | 'sms' | 'wechat' | 'mailbox' | 'weibo' | 'telegram';
export const CHANNEL_KEYS: ChannelKey[] = ['app', 'sms', 'mailbox', 'wechat', 'weibo', 'telegram'];

/** Switch a channel off here if its adapter is not ready; the rest of the suite still runs. */
export const CHANNELS: Record<ChannelKey, boolean> = {
  app: true,
  sms: true,
  mailbox: true,
  wechat: true,
  weibo: true,
  telegram: true,
};

export type FaultKey = 'broker' | 'kill' | 'smscDrop' | 'imapDrop' | 'readOnly';

export interface FaultSuiteOptions {
  label: string;
  /** How long new messages are started. */
  loadMs: number;
  /** Concurrent clients per channel (mailbox: one appender). */
  workers: Record<Exclude<ChannelKey, 'mailbox'>, number>;
  /** Pause between two messages of one client. */
  pauseMs: number;
  /** Pause between two appended mails. */
  mailEveryMs: number;
  /** Every n-th SMS is a 3-part concatenated message. */
  longSmsEvery: number;
  brokerDownMs: number;
  readOnlyMs: number;
  /** How long clients keep retrying unacknowledged messages after the load stops. */
  retryGraceMs: number;
  /** Upper bound for waiting until every acknowledged message is published. */
  settleMs: number;
  /** Fault plan: when each fault starts, as a fraction of loadMs (each waits for the previous one to finish). */
  plan: { fault: FaultKey; at: number }[];
  channels?: Partial<Record<ChannelKey, boolean>>;
  deadline?: string;
}

const DEADLINE_RATIO = 0.8;
const SMS_RETRY_STATUS = 0x64;

export interface ChannelRow {
  channel: string;
  sent: number;
  acknowledged: number;
  published: number;
  lost: number;
  duplicatedIds: number;
  duplicateDeliveries: number;
  /** Of the duplicate deliveries: the broker handing an unacked message to the test consumer again (not a second publish). */
  brokerRedeliveries: number;
  split: number;
  publishedUnacked: number;
  refusals: number;
}

export interface DeadlineRow {
  kind: 'warning' | 'breach';
  events: number;
  onTime: number;
  late: number;
  firedAtRestart: number;
  heldByReadOnlyStore: number;
  firedTwice: number;
  maxLateMs: number;
}

export interface FaultRecord {
  fault: string;
  startedAt: number;
  endedAt: number;
  ok: boolean;
  notes: string[];
}

export interface FaultSuiteResult {
  label: string;
  rows: ChannelRow[];
  total: ChannelRow;
  deadlines: DeadlineRow[];
  faults: FaultRecord[];
  skipped: string[];
  lostMarkers: string[];
  splitMarkers: string[];
  /** Mails appended to the mailbox that never reached tickets.created (mail stays upstream, so this must be empty). */
  mailsNeverPublished: string[];
  /** Acknowledgements whose attempt started after /readyz said 503 and ended before the store was writable again. */
  ackedWhileReadOnly: number;
  readOnlyProbes: Record<string, string>;
  readOnlyReadyz: { during: number | null; after: number | null };
  longSmsAcrossDrops: { marker: string; published: boolean; complete: boolean; incomplete: boolean | null }[];
  unexpectedExits: string[];
  foreignTickets: number;
  gatewayLog: string;
  table: string;
}

interface Upstream {
  marker: string;
  channel: ChannelKey;
  firstSentAt: number;
  attempts: number;
  acked: boolean;
  ackedAt: number | null;
  ackedId: string | null;
  refusals: number;
  /** mailbox: UIDs of the appended copies. */
  uids: number[];
}

interface AckEvent {
  channel: ChannelKey;
  marker: string;
  startedAt: number;
  at: number;
}

type Outcome = { ack: true; id?: string } | { ack: false; why: string };

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const MARKER_RE = /FLT-[0-9a-z]+-[a-z]+-\d+/;

const LONG_FILLER =
  '我们小区东门外的人行道上有一段路面塌陷，下雨后积水很深，老人和孩子经过时很危险，已经有人摔倒。' +
  '物业说不归他们管，希望有关部门尽快派人来查看并修复，同时在修好之前设置警示标志。谢谢！';

// ---------------------------------------------------------------------------
// The gateway process, restarted on the same DATA_DIR and port after each kill.

class GatewaySupervisor {
  proc: GatewayProcess | null = null;
  /** Intervals in which the gateway was down on purpose: [killed, listening again]. */
  readonly downs: { from: number; to: number }[] = [];
  readonly unexpectedExits: string[] = [];
  private log = '';
  private stopping = false;
  private restarting: Promise<void> | null = null;

  constructor(
    private readonly env: Record<string, string>,
    readonly port: number,
  ) {}

  get baseUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get output(): string {
    return this.log + (this.proc?.output() ?? '');
  }

  async start(): Promise<void> {
    const proc = await spawnGateway({ ...this.env, HTTP_PORT: String(this.port) });
    this.proc = proc;
    void proc.exited.then((code) => {
      if (this.proc !== proc) return;
      this.log += proc.output();
      this.proc = null;
      if (this.stopping) return;
      // Not one of ours: note it, keep the run going so the reconciliation still happens.
      this.unexpectedExits.push(`exit ${code}: ${proc.output().split('\n').slice(-5).join(' | ')}`);
      const from = Date.now();
      this.restarting = this.start()
        .then(() => void this.downs.push({ from, to: Date.now() }))
        .catch((err: Error) => void this.unexpectedExits.push(`restart failed: ${err.message}`));
    });
  }

  /** SIGKILL, then start again on the same data dir. */
  async killAndRestart(): Promise<{ killedAt: number; upAt: number }> {
    const proc = this.proc;
    if (!proc) throw new Error('gateway is not running');
    this.proc = null;
    const killedAt = Date.now();
    proc.kill('SIGKILL');
    await proc.exited;
    this.log += proc.output();
    await this.start();
    const upAt = Date.now();
    this.downs.push({ from: killedAt, to: upAt });
    return { killedAt, upAt };
  }

  /** SIGTERM (graceful path), SIGKILL after 12 s. Resolves with the exit code. */
  async stop(): Promise<number | string | null> {
    this.stopping = true;
    await this.restarting?.catch(() => {});
    const proc = this.proc;
    if (!proc) return null;
    this.proc = null;
    proc.kill('SIGTERM');
    const t = setTimeout(() => proc.kill('SIGKILL'), 12_000);
    const code = await proc.exited;
    clearTimeout(t);
    this.log += proc.output();
    return code;
  }

  /** Last resort in finally: SIGKILL whatever runs. */
  async kill(): Promise<void> {
    this.stopping = true;
    const proc = this.proc;
    if (!proc) return;
    this.proc = null;
    proc.kill('SIGKILL');
    await proc.exited;
    this.log += proc.output();
  }
}

async function readyz(baseUrl: string): Promise<{ status: number; body: any } | null> {
  try {
    const r = await fetch(`${baseUrl}/readyz`, { signal: AbortSignal.timeout(3000) });
    return { status: r.status, body: await r.json().catch(() => null) };
  } catch {
    return null;
  }
}

async function pollUntil<T>(fn: () => Promise<T | null | undefined | false>, timeoutMs: number, everyMs = 100): Promise<T | null> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > until) return null;
    await sleep(everyMs);
  }
}

// ---------------------------------------------------------------------------

export async function runFaultSuite(opts: FaultSuiteOptions): Promise<FaultSuiteResult> {
  const run = randomBytes(3).toString('hex');
  const channels: Record<ChannelKey, boolean> = { ...CHANNELS, ...opts.channels };
  const skipped: string[] = [];
  const cleanups: (() => Promise<unknown>)[] = [];
  const faults: FaultRecord[] = [];
  const upstreams: Upstream[] = [];
  const ackEvents: AckEvent[] = [];
  const counters: Record<ChannelKey, number> = { app: 0, sms: 0, wechat: 0, mailbox: 0, weibo: 0, telegram: 0 };
  let phone = 13700000000 + Math.floor(Math.random() * 1_000_000) * 100;
  let userSeq = BigInt(Date.now()) * 1000n;
  let running = true;
  let retryUntil = Infinity;
  const roWindows: { from: number; to: number }[] = [];
  /** From /readyz answering 503 to the store being switched back: nothing new may be acknowledged in here. */
  const roConfirmed: { from: number; to: number }[] = [];
  const readOnlyProbes: Record<string, string> = {};
  const readOnlyReadyz: { during: number | null; after: number | null } = { during: null, after: null };
  const longSmsAcrossDrops: { marker: string; text: string }[] = [];
  const background: Promise<unknown>[] = [];
  let t0 = Date.now();

  const newUpstream = (channel: ChannelKey): Upstream => {
    const u: Upstream = {
      marker: `FLT-${run}-${channel}-${counters[channel]++}`,
      channel,
      firstSentAt: Date.now(),
      attempts: 0,
      acked: false,
      ackedAt: null,
      ackedId: null,
      refusals: 0,
      uids: [],
    };
    upstreams.push(u);
    return u;
  };

  /** Retry like the upstream would, until acknowledged or the retry grace after the load is over. */
  const untilAcked = async (u: Upstream, attempt: () => Promise<Outcome>, onAck?: (o: Outcome & { ack: true }) => void, gatewayAck = true): Promise<boolean> => {
    let backoff = 100;
    while (Date.now() < retryUntil) {
      const startedAt = Date.now();
      u.attempts++;
      let o: Outcome;
      try {
        o = await attempt();
      } catch (err) {
        o = { ack: false, why: (err as Error).message };
      }
      if (o.ack) {
        if (gatewayAck) ackEvents.push({ channel: u.channel, marker: u.marker, startedAt, at: Date.now() });
        onAck?.(o);
        return true;
      }
      u.refusals++;
      await sleep(backoff);
      backoff = Math.min(1000, backoff * 2);
    }
    return false;
  };
  const markAcked = (u: Upstream, id?: string) => {
    u.acked = true;
    u.ackedAt = Date.now();
    if (id) u.ackedId = id;
  };

  let rabbit: PrivateRabbit | null = null;
  let smsc: TestSmsc | null = null;
  let dovecot: Dovecot | null = null;
  let wechat: FakeWechat | null = null;
  let weibo: FakeWeibo | null = null;
  let telegram: FakeTelegram | null = null;
  let rofs: ReadOnlySwitchDir | null = null;
  let sup: GatewaySupervisor | null = null;
  let created: QueueTap | null = null;
  let events: QueueTap | null = null;
  let plainDir: string | null = null;

  const secrets = {
    wechatToken: `wx-token-${run}`,
    wechatAppId: 'wx0123456789abcdef',
    wechatSecret: `wx-secret-${run}`,
    weiboSecret: `weibo-secret-${run}`,
    weiboToken: `weibo-token-${run}`,
    telegramToken: `123456:${run}`,
    telegramSecret: `tg-secret-${run}`,
  };

  try {
    // --- peers -------------------------------------------------------------
    rabbit = new PrivateRabbit();
    const r = rabbit;
    cleanups.push(() => r.dispose());
    await rabbit.startNode();

    if (channels.sms) {
      smsc = await TestSmsc.start();
      const s = smsc;
      cleanups.push(() => s.close());
    }
    if (channels.mailbox) {
      if (!dovecotAvailable()) {
        channels.mailbox = false;
        skipped.push('mailbox: Dovecot is not installed (apt-get install -y dovecot-imapd)');
      } else {
        dovecot = await startDovecot();
        const d = dovecot;
        cleanups.push(() => d.stop());
      }
    }
    if (channels.wechat) {
      wechat = await startFakeWechat({ appId: secrets.wechatAppId, appSecret: secrets.wechatSecret });
      const w = wechat;
      cleanups.push(() => w.close());
    }
    if (channels.weibo) {
      weibo = await startFakeWeibo({ accessToken: secrets.weiboToken });
      const w = weibo;
      cleanups.push(() => w.close());
    }
    if (channels.telegram) {
      telegram = await startFakeTelegram({ token: secrets.telegramToken });
      const t = telegram;
      cleanups.push(() => t.close());
    }

    // --- the data dir: switchable to read-only when FUSE is available -------
    let dataDir: string;
    if (opts.plan.some((p) => p.fault === 'readOnly')) {
      const m = await mountReadOnlySwitchDir();
      if (m.ok) {
        rofs = m.dir;
        dataDir = rofs.path;
      } else {
        skipped.push(`read-only store fault skipped: ${m.reason}`);
        dataDir = plainDir = tempDir('faults-data-');
      }
    } else {
      dataDir = plainDir = tempDir('faults-data-');
    }
    // The gateway's whole configuration: a short message deadline so warning and breach
    // events fire during the run, and fast reconnects so faults heal within it.
    const env: Record<string, string> = {
      AMQP_URL: rabbit.url,
      DATA_DIR: dataDir,
      APP_API_KEYS: `faults:${TEST_API_KEY}`,
      AMQP_RECONNECT_MAX: '1s',
      LOG_LEVEL: process.env.FAULTS_LOG_LEVEL ?? 'warn',
      DEADLINE_MESSAGE: opts.deadline ?? '3s',
      DEADLINE_WARNING_RATIO: String(DEADLINE_RATIO),
      SMS_RETRY_STATUS: String(SMS_RETRY_STATUS),
    };
    if (smsc) Object.assign(env, { SMPP_URL: smsc.url, SMS_RECONNECT_MIN: '100ms', SMS_RECONNECT_MAX: '500ms', SMS_ENQUIRE_LINK: '2s' });
    if (dovecot) Object.assign(env, { IMAP_URL: dovecot.url, IMAP_RECONNECT_MAX: '1s', IMAP_POLL_INTERVAL: '5s' });
    if (wechat) Object.assign(env, { WECHAT_TOKEN: secrets.wechatToken, WECHAT_APP_ID: secrets.wechatAppId, WECHAT_APP_SECRET: secrets.wechatSecret, WECHAT_API_URL: wechat.url });
    if (weibo) Object.assign(env, { WEIBO_APP_SECRET: secrets.weiboSecret, WEIBO_ACCESS_TOKEN: secrets.weiboToken, WEIBO_API_URL: weibo.url });
    if (telegram) Object.assign(env, { TELEGRAM_BOT_TOKEN: secrets.telegramToken, TELEGRAM_WEBHOOK_SECRET: secrets.telegramSecret, TELEGRAM_API_URL: telegram.url });

    sup = new GatewaySupervisor(env, await freePort());
    const g = sup;
    await g.start();
    const base = g.baseUrl;
    created = new QueueTap(rabbit.url, 'tickets.created').start();
    events = new QueueTap(rabbit.url, 'tickets.events').start();
    if (smsc) await smsc.waitForBind(1, 20_000);
    // Both taps consuming before the load starts, so the run's first tickets are seen.
    await pollUntil(async () => created!.connects > 0 && events!.connects > 0, 20_000);

    // --- clients per channel ---------------------------------------------------
    const appAttempt = (u: Upstream) => async (): Promise<Outcome> => {
      const res = await fetch(`${base}/api/v1/tickets`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${TEST_API_KEY}` },
        body: JSON.stringify({ clientMessageId: u.marker, citizen: { id: `c-${u.marker}` }, content: `小区路灯坏了好几天，晚上很黑 ${u.marker}` }),
        signal: AbortSignal.timeout(5000),
      });
      if (res.status === 202 || res.status === 200) return { ack: true, id: ((await res.json()) as { id: string }).id };
      await res.arrayBuffer();
      return { ack: false, why: String(res.status) };
    };

    const smsDeliver = (fields: Record<string, unknown>) => async (): Promise<Outcome> => {
      if (!smsc!.bound) return { ack: false, why: 'unbound' };
      const status = await smsc!.deliver(fields, 5000);
      return status === 0 ? { ack: true } : { ack: false, why: `0x${status.toString(16)}` };
    };
    /** A message is acknowledged once every part got ESME_ROK (the SMSC retries each part on its own). */
    const smsParts = async (u: Upstream, parts: Record<string, unknown>[], from = 0): Promise<void> => {
      for (let i = from; i < parts.length; i++) {
        if (!(await untilAcked(u, smsDeliver(parts[i]!)))) return;
      }
      markAcked(u);
    };
    const smsMessage = (u: Upstream, long: boolean, parts = 3): Record<string, unknown>[] => {
      const from = String(phone++);
      if (!long) {
        return [{ source_addr: from, destination_addr: SERVICE_NUMBER, data_coding: 8, short_message: encodeText(`${u.marker} 楼下垃圾好几天没人清运了`, 8) }];
      }
      const text = `${u.marker} ${LONG_FILLER.slice(0, parts * 60)} END${u.marker}`;
      return smsc!.segments(text, { method: 'udh8', ref: counters.sms & 0xff, parts, from });
    };

    const wechatAttempt = (xml: string) => async (): Promise<Outcome> => {
      const r = await pushToWechat(base, { token: secrets.wechatToken, appId: secrets.wechatAppId }, xml, { signal: AbortSignal.timeout(6000) });
      // 200 with a passive reply (the receipt) or `success` is WeChat's "delivered, do not retry".
      if (r.status === 200 && (r.reply?.Content || r.body === 'success')) return { ack: true };
      return { ack: false, why: `${r.status}` };
    };
    const weiboAttempt = (body: string) => async (): Promise<Outcome> => {
      const r = await pushToWeibo(base, secrets.weiboSecret, body);
      return r.status === 200 ? { ack: true } : { ack: false, why: String(r.status) };
    };
    const telegramAttempt = (update: unknown) => async (): Promise<Outcome> => {
      const r = await postWebhook(base, secrets.telegramSecret, update);
      return r.status === 200 ? { ack: true } : { ack: false, why: String(r.status) };
    };

    const one = async (channel: Exclude<ChannelKey, 'mailbox'>, n: number): Promise<void> => {
      const u = newUpstream(channel);
      switch (channel) {
        case 'app':
          await untilAcked(u, appAttempt(u), (o) => markAcked(u, o.id));
          return;
        case 'sms':
          await smsParts(u, smsMessage(u, n % opts.longSmsEvery === 0));
          return;
        case 'wechat': {
          const xml = textMessage(`oFaults${(userSeq++).toString(36)}`, `公交站台的顶棚破了，下雨漏水 ${u.marker}`, nextMsgId());
          await untilAcked(u, wechatAttempt(xml), () => markAcked(u));
          return;
        }
        case 'weibo': {
          const body = weiboPushBody({ type: 'text', senderId: (userSeq++).toString(), text: `公园里的健身器材坏了 ${u.marker}`, createdAt: weiboDate(new Date()) });
          await untilAcked(u, weiboAttempt(body), () => markAcked(u));
          return;
        }
        case 'telegram': {
          const update = makeUpdate({ text: `The street light on our lane is broken ${u.marker}` }, { userId: Number(userSeq++ % 1_000_000_000n) + 1 });
          await untilAcked(u, telegramAttempt(update), () => markAcked(u));
          return;
        }
      }
    };

    const workers: Promise<void>[] = [];
    for (const ch of ['app', 'sms', 'wechat', 'weibo', 'telegram'] as const) {
      if (!channels[ch]) continue;
      for (let w = 0; w < opts.workers[ch]; w++) {
        workers.push(
          (async () => {
            let n = w;
            while (running) {
              await one(ch, n);
              n += opts.workers[ch];
              await sleep(opts.pauseMs);
            }
          })(),
        );
      }
    }
    const mail = (u: Upstream): string =>
      [
        `From: =?UTF-8?B?${Buffer.from('市民').toString('base64')}?= <${u.marker.toLowerCase()}@citizen.example.cn>`,
        'To: mayor@city.example.gov.cn',
        `Subject: =?UTF-8?B?${Buffer.from(`反映噪音扰民问题 ${u.marker}`).toString('base64')}?=`,
        `Message-ID: <${u.marker}@faults.example.cn>`,
        `Date: ${new Date().toUTCString()}`,
        'MIME-Version: 1.0',
        'Content-Type: text/plain; charset=UTF-8',
        'Content-Transfer-Encoding: base64',
        '',
        Buffer.from(`市长您好：\n附近工地夜间施工噪音很大，影响休息。\n${u.marker}\n`).toString('base64'),
        '',
      ].join('\r\n');
    if (dovecot) {
      const d = dovecot;
      workers.push(
        (async () => {
          while (running) {
            const u = newUpstream('mailbox');
            const raw = mail(u);
            // An APPEND cut by a kick may or may not have landed: appending again is
            // what a mail server's retry does, and the Message-ID makes it one ticket.
            await untilAcked(u, async () => {
              const uid = await d.append(raw);
              if (uid !== undefined) u.uids.push(uid);
              return { ack: true };
              // Dovecot took the mail; the gateway's acknowledgement is the $Ticketed flag, read at the end.
            }, undefined, false);
            await sleep(opts.mailEveryMs);
          }
        })(),
      );
    }

    // --- faults ------------------------------------------------------------------
    t0 = Date.now();
    const record = async (fault: string, fn: (notes: string[]) => Promise<boolean>) => {
      const rec: FaultRecord = { fault, startedAt: Date.now() - t0, endedAt: 0, ok: false, notes: [] };
      faults.push(rec);
      try {
        rec.ok = await fn(rec.notes);
      } catch (err) {
        rec.notes.push(`error: ${(err as Error).message}`);
      }
      rec.endedAt = Date.now() - t0;
    };

    let kills = 0;
    const doFault = async (f: FaultKey): Promise<void> => {
      switch (f) {
        case 'broker':
          return record('RabbitMQ stopped and restarted', async (notes) => {
            await rabbit!.stopNode();
            const stoppedAt = Date.now();
            const down = await pollUntil(async () => {
              const r = await readyz(base);
              return r && r.body?.broker === 'down' ? r : null;
            }, 10_000);
            notes.push(down ? `/readyz ${down.status} broker=down backlog=${down.body.backlog}` : '/readyz never showed broker down');
            await sleep(opts.brokerDownMs);
            const acksWhileDown = ackEvents.filter((a) => a.at >= stoppedAt).length;
            await rabbit!.startNode();
            notes.push(`${acksWhileDown} messages acknowledged with the broker down`);
            const up = await pollUntil(async () => {
              const r = await readyz(base);
              return r && r.body?.broker === 'up' ? r : null;
            }, 30_000);
            notes.push(up ? 'broker link up again' : 'broker link did not come back within 30 s');
            return Boolean(down && down.status === 200 && up);
          });
        case 'kill':
          return record(`gateway SIGKILL #${++kills}`, async (notes) => {
            const { killedAt, upAt } = await g.killAndRestart();
            notes.push(`restarted on the same DATA_DIR in ${upAt - killedAt} ms`);
            return true;
          });
        case 'smscDrop':
          return record('SMSC connection dropped mid long message', async (notes) => {
            if (!smsc) {
              notes.push('SMS channel off');
              return false;
            }
            const s = smsc;
            const u = newUpstream('sms');
            const parts = 5;
            const from = String(phone++);
            const text = `${u.marker} ${LONG_FILLER.slice(0, 200)} END${u.marker}`;
            const fields = s.segments(text, { method: 'udh8', ref: 0x5a, parts, from });
            longSmsAcrossDrops.push({ marker: u.marker, text });
            for (let i = 0; i < 2; i++) if (!(await untilAcked(u, smsDeliver(fields[i]!)))) return false;
            const binds = s.binds;
            // Part 3 is on the wire when the link dies: its answer never comes, so it is sent again.
            const inFlight = s.deliver(fields[2]!, 5000).catch((err: Error) => err.message);
            s.dropConnections();
            notes.push(`parts 1-2 acknowledged, part 3 in flight: ${String(await inFlight)}`);
            await s.waitForBind(binds + 1, 20_000);
            notes.push(`gateway bound again after ${s.binds - binds} bind(s)`);
            await smsParts(u, fields, 2);
            notes.push(u.acked ? 'parts 3-5 acknowledged after the reconnect' : 'rest of the message not acknowledged');
            return u.acked;
          });
        case 'imapDrop':
          return record('IMAP connection dropped', async (notes) => {
            if (!dovecot) {
              notes.push('mailbox channel off');
              return false;
            }
            const imapState = async () => {
              const r = await readyz(base);
              return (r?.body?.channels?.mailbox?.imap ?? null) as { state?: string; reconnects?: number } | null;
            };
            // Kick a live session, not one still reconnecting after an earlier fault.
            const before = await pollUntil(async () => {
              const s = await imapState();
              return s?.state === 'connected' ? s : null;
            }, 20_000);
            const kicked = await dovecot.kick();
            notes.push(kicked ? 'doveadm kick: sessions disconnected' : 'doveadm kick: nobody was connected');
            const after = await pollUntil(async () => {
              const s = await imapState();
              return s?.state === 'connected' && (s.reconnects ?? 0) > (before?.reconnects ?? 0) ? s : null;
            }, 20_000);
            notes.push(after ? `gateway reconnected to IMAP (reconnects ${before?.reconnects} → ${after.reconnects})` : 'gateway did not reconnect to IMAP within 20 s');
            return kicked && Boolean(before) && Boolean(after);
          });
        case 'readOnly':
          return record('disk store made read-only', async (notes) => {
            if (!rofs) {
              notes.push('skipped: no switchable filesystem');
              return false;
            }
            const from = Date.now();
            rofs.setReadOnly(true);
            const refused = await pollUntil(async () => {
              const r = await readyz(base);
              return r && r.status === 503 ? r : null;
            }, 10_000, 50);
            readOnlyReadyz.during = refused?.status ?? (await readyz(base))?.status ?? null;
            const confirmedAt = Date.now();
            notes.push(refused ? `/readyz 503: ${(refused.body?.reasons ?? []).join('; ').slice(0, 120)}` : '/readyz never answered 503');
            // One message per channel while read-only: each must be refused, then retried later.
            const probes: Promise<void>[] = [];
            const probe = (ch: ChannelKey, attempt: () => Promise<Outcome>, retry: (u: Upstream) => Promise<void>, u: Upstream) => {
              probes.push(
                (async () => {
                  let o: Outcome;
                  try {
                    o = await attempt();
                  } catch (err) {
                    o = { ack: false, why: (err as Error).message };
                  }
                  u.attempts++;
                  readOnlyProbes[ch] = o.ack ? 'ACKNOWLEDGED' : `refused (${o.why})`;
                  if (o.ack) {
                    ackEvents.push({ channel: ch, marker: u.marker, startedAt: confirmedAt, at: Date.now() });
                    markAcked(u);
                  } else background.push(retry(u));
                })(),
              );
            };
            if (channels.app) {
              const u = newUpstream('app');
              probe('app', appAttempt(u), (x) => untilAcked(x, appAttempt(x), (o) => markAcked(x, o.id)).then(() => {}), u);
            }
            if (smsc) {
              const u = newUpstream('sms');
              const fields = smsMessage(u, false);
              probe('sms', smsDeliver(fields[0]!), (x) => smsParts(x, fields), u);
            }
            if (wechat) {
              const u = newUpstream('wechat');
              const xml = textMessage(`oFaults${(userSeq++).toString(36)}`, `井盖丢了很危险 ${u.marker}`, nextMsgId());
              probe('wechat', wechatAttempt(xml), (x) => untilAcked(x, wechatAttempt(xml), () => markAcked(x)).then(() => {}), u);
            }
            if (weibo) {
              const u = newUpstream('weibo');
              const body = weiboPushBody({ type: 'text', senderId: (userSeq++).toString(), text: `路边违章停车堵路 ${u.marker}`, createdAt: weiboDate(new Date()) });
              probe('weibo', weiboAttempt(body), (x) => untilAcked(x, weiboAttempt(body), () => markAcked(x)).then(() => {}), u);
            }
            if (telegram) {
              const u = newUpstream('telegram');
              const update = makeUpdate({ text: `Water pipe burst near the school ${u.marker}` }, { userId: Number(userSeq++ % 1_000_000_000n) + 1 });
              probe('telegram', telegramAttempt(update), (x) => untilAcked(x, telegramAttempt(update), () => markAcked(x)).then(() => {}), u);
            }
            await Promise.all(probes);
            await sleep(Math.max(0, opts.readOnlyMs - (Date.now() - from)));
            const rwAt = Date.now();
            rofs.setReadOnly(false);
            roWindows.push({ from, to: rwAt });
            roConfirmed.push({ from: confirmedAt, to: rwAt });
            const back = await pollUntil(async () => {
              const r = await readyz(base);
              return r && r.status === 200 ? r : null;
            }, 15_000, 50);
            readOnlyReadyz.after = back?.status ?? null;
            notes.push(back ? `writable again; /readyz 200 after ${Date.now() - rwAt} ms` : '/readyz did not return to 200');
            return Boolean(refused && back);
          });
      }
    };

    const plan = [...opts.plan].sort((a, b) => a.at - b.at);
    for (const step of plan) {
      if (step.fault === 'readOnly' && !rofs) {
        faults.push({ fault: 'disk store made read-only', startedAt: Date.now() - t0, endedAt: Date.now() - t0, ok: false, notes: ['skipped: ' + skipped.join('; ')] });
        continue;
      }
      const wait = t0 + step.at * opts.loadMs - Date.now();
      if (wait > 0) await sleep(wait);
      await doFault(step.fault);
    }
    const loadLeft = t0 + opts.loadMs - Date.now();
    if (loadLeft > 0) await sleep(loadLeft);

    // --- wind down: clients finish what they started, then wait for the broker side --
    running = false;
    retryUntil = Date.now() + opts.retryGraceMs;
    await Promise.all(workers);
    await Promise.all(background);
    const lastAck = Math.max(0, ...upstreams.map((u) => u.ackedAt ?? 0));

    const markerOf = (m: Tapped): string | null => {
      const c = typeof m.body?.content === 'string' ? m.body.content : '';
      const s = typeof m.body?.subject === 'string' ? m.body.subject : '';
      return (c.match(MARKER_RE) ?? s.match(MARKER_RE))?.[0] ?? null;
    };
    const mustPublish = upstreams.filter((u) => u.acked || (u.channel === 'mailbox' && u.uids.length > 0));
    const publishedMarkers = () => new Set(created!.messages.map(markerOf).filter((x): x is string => x !== null));
    const deadlineSettle = lastAck + parseSeconds(opts.deadline ?? '3s') + 2500;
    await pollUntil(async () => {
      const seen = publishedMarkers();
      return mustPublish.every((u) => seen.has(u.marker)) && Date.now() > deadlineSettle;
    }, opts.settleMs, 250);

    // IMAP: a mail is acknowledged upstream when it carries $Ticketed.
    if (dovecot) {
      const flags = await dovecot.flags();
      for (const u of upstreams.filter((x) => x.channel === 'mailbox')) {
        if (u.uids.some((uid) => flags.get(uid)?.has('$Ticketed'))) markAcked(u);
        else if (process.env.FAULTS_DEBUG) console.log(`mailbox ${u.marker} not flagged: uids ${u.uids.join(',')} flags ${u.uids.map((x) => [...(flags.get(x) ?? [])].join(' ')).join(' / ')} (${flags.size} mails)`);
      }
    }

    // --- stop the gateway gracefully (the last messages settle through the SIGTERM path)
    const exitCode = await g.stop();
    if (exitCode !== 0 && exitCode !== null) sup.unexpectedExits.push(`SIGTERM at the end: exit ${exitCode}`);
    // A few hundred ms for the last confirms to reach the taps.
    await sleep(500);

    return reconcile({
      opts,
      upstreams,
      ackEvents,
      created: created.messages,
      events: events.messages,
      markerOf,
      downs: g.downs,
      roWindows,
      roConfirmed,
      readOnlyProbes,
      readOnlyReadyz,
      longSmsAcrossDrops,
      faults,
      skipped,
      unexpectedExits: g.unexpectedExits,
      gatewayLog: g.output,
      t0,
      deadlineMs: parseSeconds(opts.deadline ?? '3s'),
    });
  } finally {
    await created?.close().catch(() => {});
    await events?.close().catch(() => {});
    await sup?.kill().catch(() => {});
    // The gateway is dead: now the data dir can be unmounted.
    await rofs?.dispose().catch(() => {});
    if (plainDir) rmSync(plainDir, { recursive: true, force: true });
    for (const c of cleanups.reverse()) await c().catch(() => {});
  }
}

function parseSeconds(d: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)$/.exec(d);
  if (!m) return 3000;
  const n = Number(m[1]);
  return m[2] === 'ms' ? n : m[2] === 's' ? n * 1000 : n * 60_000;
}

// ---------------------------------------------------------------------------
// Reconciliation

interface ReconcileInput {
  opts: FaultSuiteOptions;
  upstreams: Upstream[];
  ackEvents: AckEvent[];
  created: Tapped[];
  events: Tapped[];
  markerOf: (m: Tapped) => string | null;
  downs: { from: number; to: number }[];
  roWindows: { from: number; to: number }[];
  roConfirmed: { from: number; to: number }[];
  readOnlyProbes: Record<string, string>;
  readOnlyReadyz: { during: number | null; after: number | null };
  longSmsAcrossDrops: { marker: string; text: string }[];
  faults: FaultRecord[];
  skipped: string[];
  unexpectedExits: string[];
  gatewayLog: string;
  t0: number;
  deadlineMs: number;
}

function reconcile(i: ReconcileInput): FaultSuiteResult {
  // What reached tickets.created, by marker and by id.
  const idsByMarker = new Map<string, Set<string>>();
  const deliveriesById = new Map<string, number>();
  const redeliveriesById = new Map<string, number>();
  const dupTimes: { id: string; atMs: number; redelivered: boolean }[] = [];
  const ticketById = new Map<string, any>();
  let foreign = 0;
  for (const m of i.created) {
    const id = String(m.body?.id);
    const marker = i.markerOf(m);
    if (!marker) {
      foreign++;
      continue;
    }
    if (!idsByMarker.has(marker)) idsByMarker.set(marker, new Set());
    idsByMarker.get(marker)!.add(id);
    deliveriesById.set(id, (deliveriesById.get(id) ?? 0) + 1);
    if (deliveriesById.get(id)! > 1) {
      dupTimes.push({ id, atMs: m.receivedAt - i.t0, redelivered: m.redelivered });
      if (m.redelivered) redeliveriesById.set(id, (redeliveriesById.get(id) ?? 0) + 1);
    }
    if (!ticketById.has(id)) ticketById.set(id, m.body);
  }

  const lostMarkers: string[] = [];
  const splitMarkers: string[] = [];
  const mailsNeverPublished: string[] = [];
  const rows: ChannelRow[] = [];
  for (const ch of CHANNEL_KEYS) {
    const us = i.upstreams.filter((u) => u.channel === ch);
    if (us.length === 0) continue;
    const row: ChannelRow = { channel: ch, sent: us.length, acknowledged: 0, published: 0, lost: 0, duplicatedIds: 0, duplicateDeliveries: 0, brokerRedeliveries: 0, split: 0, publishedUnacked: 0, refusals: 0 };
    for (const u of us) {
      const ids = idsByMarker.get(u.marker) ?? new Set<string>();
      row.refusals += u.refusals;
      if (u.acked) row.acknowledged++;
      if (ids.size > 0) row.published++;
      if (u.acked && ids.size === 0) {
        row.lost++;
        lostMarkers.push(u.marker);
      }
      if (!u.acked && ids.size > 0) row.publishedUnacked++;
      // Two ids for one upstream message; for the app also: the id it was told is not the one published.
      const split = ids.size > 1 || (u.ackedId !== null && ids.size > 0 && !ids.has(u.ackedId));
      if (split) {
        row.split++;
        splitMarkers.push(u.marker);
      }
      for (const id of ids) {
        const n = deliveriesById.get(id) ?? 0;
        if (n > 1) {
          row.duplicatedIds++;
          row.duplicateDeliveries += n - 1;
          row.brokerRedeliveries += redeliveriesById.get(id) ?? 0;
        }
      }
      if (ch === 'mailbox' && u.uids.length > 0 && ids.size === 0) mailsNeverPublished.push(u.marker);
    }
    rows.push(row);
  }
  const total: ChannelRow = rows.reduce(
    (t, r) => ({
      channel: 'total',
      sent: t.sent + r.sent,
      acknowledged: t.acknowledged + r.acknowledged,
      published: t.published + r.published,
      lost: t.lost + r.lost,
      duplicatedIds: t.duplicatedIds + r.duplicatedIds,
      duplicateDeliveries: t.duplicateDeliveries + r.duplicateDeliveries,
      brokerRedeliveries: t.brokerRedeliveries + r.brokerRedeliveries,
      split: t.split + r.split,
      publishedUnacked: t.publishedUnacked + r.publishedUnacked,
      refusals: t.refusals + r.refusals,
    }),
    { channel: 'total', sent: 0, acknowledged: 0, published: 0, lost: 0, duplicatedIds: 0, duplicateDeliveries: 0, brokerRedeliveries: 0, split: 0, publishedUnacked: 0, refusals: 0 },
  );

  // Deadline events: compare `at` with the due time.
  const within = (t: number, ws: { from: number; to: number }[], slackMs: number) => ws.some((w) => t >= w.from - 1000 && t <= w.to + slackMs);
  const deadlines: DeadlineRow[] = [];
  const lateDetail: { kind: string; ticketId: string; dueMs: number; atMs: number; lateMs: number }[] = [];
  for (const kind of ['warning', 'breach'] as const) {
    const prefix = kind === 'warning' ? 'ticket.deadline.warning.' : 'ticket.deadline.breached.';
    const row: DeadlineRow = { kind, events: 0, onTime: 0, late: 0, firedAtRestart: 0, heldByReadOnlyStore: 0, firedTwice: 0, maxLateMs: 0 };
    const seenMessageIds = new Set<string>();
    const idsByTicket = new Map<string, Set<string>>();
    for (const e of i.events) {
      if (!e.routingKey.startsWith(prefix)) continue;
      const ticket = ticketById.get(String(e.body?.ticketId));
      if (!ticket) continue; // a ticket of another run, or one without our marker
      const mid = e.messageId ?? `${e.body.ticketId}/${kind}/${e.body.at}`;
      if (seenMessageIds.has(mid)) continue; // at-least-once redelivery of the same event
      seenMessageIds.add(mid);
      if (!idsByTicket.has(ticket.id)) idsByTicket.set(ticket.id, new Set());
      idsByTicket.get(ticket.id)!.add(mid);
      row.events++;
      const receivedAt = Date.parse(ticket.receivedAt);
      const respondBy = Date.parse(e.body.respondBy ?? ticket.deadline?.respondBy);
      const due = kind === 'breach' ? respondBy : receivedAt + DEADLINE_RATIO * (respondBy - receivedAt);
      const at = Date.parse(e.body.at);
      const lateMs = at - due;
      if (lateMs <= 1000) row.onTime++;
      else if (within(due, i.downs, 1000)) row.firedAtRestart++;
      else if (within(due, i.roWindows, 1500)) row.heldByReadOnlyStore++;
      else {
        row.late++;
        row.maxLateMs = Math.max(row.maxLateMs, lateMs);
        lateDetail.push({ kind, ticketId: ticket.id, dueMs: due - i.t0, atMs: at - i.t0, lateMs });
      }
    }
    for (const ids of idsByTicket.values()) if (ids.size > 1) row.firedTwice++;
    deadlines.push(row);
  }

  const windowOf = (a: AckEvent) => i.roConfirmed.find((w) => a.startedAt >= w.from && a.at <= w.to);
  const roAcks = i.ackEvents.filter((a) => windowOf(a));
  const durableBefore = (a: AckEvent) =>
    [...(idsByMarker.get(a.marker) ?? [])].some((id) => Date.parse(ticketById.get(id)?.receivedAt) < windowOf(a)!.from);
  // A retry of a message already journaled before the store went read-only may be
  // acknowledged: it is durable. Anything else acknowledged in that window is not.
  const ackedWhileReadOnly = roAcks.filter((a) => !durableBefore(a)).length;
  const ackedDuplicatesWhileReadOnly = roAcks.length - ackedWhileReadOnly;

  const longSms: FaultSuiteResult['longSmsAcrossDrops'] = i.longSmsAcrossDrops.map((l) => {
    const ids = idsByMarker.get(l.marker);
    const t = ids && ids.size > 0 ? ticketById.get([...ids][0]!) : null;
    return {
      marker: l.marker,
      published: Boolean(t),
      // The published text must hold the start, the middle and the end of what was sent.
      complete: Boolean(t && typeof t.content === 'string' && t.content.includes(`END${l.marker}`) && t.content.includes(l.text.slice(20, 60))),
      incomplete: t ? Boolean(t.incomplete) : null,
    };
  });

  const table = formatTable(i.opts.label, rows, total, deadlines, i.faults, i.skipped, {
    ackedWhileReadOnly,
    ackedDuplicatesWhileReadOnly,
    readOnlyProbes: i.readOnlyProbes,
    unexpectedExits: i.unexpectedExits,
    foreign,
    longSms,
  });

  if (process.env.FAULTS_DEBUG) {
    const f = join(tmpdir(), `faults-debug-${Date.now()}.json`);
    const rel = (w: { from: number; to: number }) => ({ from: w.from - i.t0, to: w.to - i.t0 });
    writeFileSync(f, JSON.stringify({ downs: i.downs.map(rel), ro: i.roWindows.map(rel), lateDetail, dupTimes, roAcks: roAcks.map((a) => ({ ...a, startedAt: a.startedAt - i.t0, at: a.at - i.t0 })) }, null, 1));
    console.log(`fault suite debug data: ${f}`);
  }
  let gatewayLog = '';
  if (total.lost > 0 || total.split > 0 || i.unexpectedExits.length > 0) {
    gatewayLog = join(tmpdir(), `faults-gateway-${Date.now()}.log`);
    writeFileSync(gatewayLog, i.gatewayLog);
  }

  return {
    label: i.opts.label,
    rows,
    total,
    deadlines,
    faults: i.faults,
    skipped: i.skipped,
    lostMarkers,
    splitMarkers,
    mailsNeverPublished,
    ackedWhileReadOnly,
    readOnlyProbes: i.readOnlyProbes,
    readOnlyReadyz: i.readOnlyReadyz,
    longSmsAcrossDrops: longSms,
    unexpectedExits: i.unexpectedExits,
    foreignTickets: foreign,
    gatewayLog,
    table,
  };
}

function grid(header: string[], body: (string | number)[][]): string {
  const cells = [header, ...body.map((r) => r.map(String))];
  const widths = header.map((_, c) => Math.max(...cells.map((r) => r[c]!.length)));
  const line = (r: string[]) => '| ' + r.map((v, c) => (c === 0 ? v.padEnd(widths[c]!) : v.padStart(widths[c]!))).join(' | ') + ' |';
  const sep = '|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|';
  return [line(cells[0]!), sep, ...cells.slice(1).map(line)].join('\n');
}

function formatTable(
  label: string,
  rows: ChannelRow[],
  total: ChannelRow,
  deadlines: DeadlineRow[],
  faults: FaultRecord[],
  skipped: string[],
  extra: {
    ackedWhileReadOnly: number;
    ackedDuplicatesWhileReadOnly: number;
    readOnlyProbes: Record<string, string>;
    unexpectedExits: string[];
    foreign: number;
    longSms: FaultSuiteResult['longSmsAcrossDrops'];
  },
): string {
  const out: string[] = [];
  out.push(`\nFault suite (${label}): reconciliation of upstream acknowledgements against tickets.created`);
  out.push(
    grid(
      ['channel', 'sent', 'acknowledged', 'published', 'lost', 'duplicated ids', 'dup deliveries', 'of which broker redelivery', 'split (2 ids)', 'published unacked', 'refused attempts'],
      [...rows, total].map((r) => [r.channel, r.sent, r.acknowledged, r.published, r.lost, r.duplicatedIds, r.duplicateDeliveries, r.brokerRedeliveries, r.split, r.publishedUnacked, r.refusals]),
    ),
  );
  out.push('\nDeadline events (late = more than 1 s after due, not explained by a fault)');
  out.push(
    grid(
      ['event', 'events', 'on time', 'late deadline events', 'fired at restart', 'held by read-only store', 'fired twice', 'max late ms'],
      deadlines.map((d) => [d.kind, d.events, d.onTime, d.late, d.firedAtRestart, d.heldByReadOnlyStore, d.firedTwice, d.maxLateMs]),
    ),
  );
  out.push('\nFaults injected (ms from load start)');
  out.push(grid(['fault', 'start', 'end', 'ok', 'notes'], faults.map((f) => [f.fault, f.startedAt, f.endedAt, f.ok ? 'yes' : f.notes.some((n) => n.startsWith('skipped')) ? 'skipped' : 'NO', f.notes.join('; ')])));
  const probes = Object.entries(extra.readOnlyProbes).map(([k, v]) => `${k} ${v}`).join(', ');
  if (probes) out.push(`\nwhile read-only: ${probes}; new messages acknowledged while read-only: ${extra.ackedWhileReadOnly} (retries of messages journaled before, acknowledged as duplicates: ${extra.ackedDuplicatesWhileReadOnly})`);
  for (const l of extra.longSms) out.push(`long SMS across the SMSC drop (${l.marker}): ${l.published ? 'published' : 'NOT published'}, ${l.complete ? 'all 5 parts joined' : 'content incomplete'}, incomplete flag ${l.incomplete}`);
  if (extra.foreign) out.push(`tickets without a marker of this run: ${extra.foreign}`);
  if (extra.unexpectedExits.length) out.push(`gateway exits not caused by the suite: ${extra.unexpectedExits.join(' || ')}`);
  for (const s of skipped) out.push(`skipped: ${s}`);
  return out.join('\n');
}
