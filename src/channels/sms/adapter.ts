import { randomInt } from 'node:crypto';
import type { Logger } from 'pino';
import smpp from 'smpp';
import type { Config } from '../../config.js';
import { GatewayError, errorCode, errorMessage, isTransient } from '../../errors.js';
import type { AdapterContext, ChannelAdapter, ChannelState, Intake, OutboundMessage, SendResult, StoredPart } from '../types.js';
import { encodeOutgoing, TextTooLongError } from './encode.js';
import {
  assemble,
  classify,
  decodePartMeta,
  digitsOf,
  doneKeyOf,
  encodePartMeta,
  groupOf,
  isDoneDuplicate,
  parseDone,
  rawPdu,
  receiptIdVariants,
  recordDone,
  type Receipt,
  type Segment,
} from './parse.js';
import { useRawSmppMessages } from './smpp-raw.js';
import { SubmitGate } from './window.js';

const ESME_ROK = 0x00;
const ESME_RINVCMDID = 0x03;
const ESME_RTHROTTLED = 0x58;

/**
 * submit_sm_resp statuses worth retrying: the SMSC is busy, throttling, or briefly
 * unable (SMPP 3.4 §5.1.3; the set operators document as retryable).
 */
const TRANSIENT_SUBMIT = new Set([0x04, 0x08, 0x14, 0x45, 0x58, 0x64, 0x67, 0xfe, 0xff]);

/** deliver_sm handled at once; beyond this the socket is paused so the SMSC's own window holds the rest. */
const MAX_INFLIGHT_MO = 64;
/** Connect plus bind must finish within this, or the attempt is abandoned and retried. */
const BIND_TIMEOUT_MS = 10_000;
/** A submit_sm without submit_sm_resp for this long is given up (retried by the dispatcher). */
const SUBMIT_TIMEOUT_MS = 30_000;
/** How long a send waits for a window slot or a bind before it reports a transient failure. */
const SUBMIT_WAIT_MS = 10_000;
/** Messages partly submitted, remembered so a retry sends only the missing parts. */
const PARTIAL_SENDS_MAX = 1000;
const STALE_BATCH = 50;
const BACKLOG_CHECK_MS = 200;
const RECEIPT_RETRY_MS = [100, 400, 1500];
const UNBIND_WAIT_MS = 2000;
const DRAIN_WAIT_MS = 3000;

const ERROR_NAMES = new Map<number, string>(Object.entries(smpp.errors).map(([name, code]) => [code, name]));
function statusName(status: number): string {
  return ERROR_NAMES.get(status) ?? `0x${status.toString(16).padStart(8, '0')}`;
}

interface Link {
  session: smpp.Session;
  bound: boolean;
  closed: boolean;
  paused: boolean;
  /** Sequence number of an enquire_link still unanswered, and when it was sent. */
  enquirePendingSince: number | null;
  enquireTimer: NodeJS.Timeout | null;
  bindTimer: NodeJS.Timeout | null;
  pendingSubmits: Set<(err: Error) => void>;
}

/** A long message whose parts went out only in part: its reference and the parts the SMSC took. */
interface PartialSend {
  ref: number;
  sent: Map<number, string>;
}

export interface SmppTarget {
  host: string;
  port: number;
  tls: boolean;
  systemId: string;
  password: string;
}

export function parseSmppUrl(url: string): SmppTarget {
  const u = new URL(url);
  const tls = u.protocol === 'ssmpp:';
  return {
    host: u.hostname,
    port: u.port ? Number(u.port) : tls ? 3550 : 2775,
    tls,
    systemId: decodeURIComponent(u.username),
    password: decodeURIComponent(u.password),
  };
}

/**
 * SMS over SMPP 3.4: the gateway is an ESME bound as transceiver to the operator's
 * SMSC. Mobile-originated deliver_sm (and data_sm) become tickets; receipts and
 * replies go out as submit_sm from the service number. Every deliver_sm is answered
 * only after what it carried is durable: the ticket, the stored segment, the
 * rejected-input record or the delivery status. When the store cannot take it the
 * answer is SMS_RETRY_STATUS, so the SMSC delivers it again later.
 */
export class SmsAdapter implements ChannelAdapter {
  readonly channel = 'sms' as const;
  readonly receiptMode = 'active' as const;

  private ctx: AdapterContext | null = null;
  private intake: Intake | null = null;
  private state: ChannelState | null = null;
  private readonly target: SmppTarget;
  private link: Link | null = null;
  private stopping = false;
  private stopPromise: Promise<void> | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private reconnectAttempt = 0;
  private sweepTimer: NodeJS.Timeout | null = null;
  private backlogTimer: NodeJS.Timeout | null = null;
  private sweeping: Promise<void> | null = null;
  private inflightMo = 0;
  private readonly idle: (() => void)[] = [];
  private readonly groupLocks = new Map<string, Promise<unknown>>();
  private readonly partialSends = new Map<string, PartialSend>();
  /** Concatenation reference of the next long message; consecutive messages to one handset never share one. */
  private nextRef = randomInt(256);
  private readonly gate: SubmitGate;
  private binds = 0;
  private lastError: string | null = null;

  constructor(
    private readonly config: Config,
    private readonly logger: Logger,
  ) {
    this.target = parseSmppUrl(config.SMPP_URL!);
    this.gate = new SubmitGate(config.SMS_WINDOW, config.SMS_TPS, () => this.link?.bound === true && !this.link.closed);
  }

  // -------------------------------------------------------------------------
  // Lifecycle

  async start(ctx: AdapterContext): Promise<void> {
    useRawSmppMessages();
    this.ctx = ctx;
    this.intake = ctx.intake;
    this.state = ctx.intake.state('sms');
    const sweepEvery = Math.max(50, Math.min(this.config.SMS_REASSEMBLY_TIMEOUT / 4, 30_000));
    this.sweepTimer = setInterval(() => void this.sweep(), sweepEvery);
    this.sweepTimer.unref();
    // The backlog also grows without any new deliver_sm (receipts, events), so look regularly.
    this.backlogTimer = setInterval(() => this.updateReading(), BACKLOG_CHECK_MS);
    this.backlogTimer.unref();
    // Messages whose segments stopped arriving while the gateway was down are due now.
    void this.sweep();
    this.connect();
  }

  stop(): Promise<void> {
    this.stopPromise ??= this.doStop();
    return this.stopPromise;
  }

  private async doStop(): Promise<void> {
    this.stopping = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    for (const t of [this.backlogTimer, this.sweepTimer]) if (t) clearInterval(t);
    this.reconnectTimer = this.backlogTimer = this.sweepTimer = null;
    this.gate.close();
    // deliver_sm arriving from now on are answered "retry later"; wait for those
    // already being stored so each gets its real answer.
    const link = this.link;
    if (link && link.paused) this.setPaused(link, false);
    await this.waitIdle(DRAIN_WAIT_MS);
    if (this.sweeping) await Promise.race([this.sweeping, sleep(DRAIN_WAIT_MS)]);
    // A submit_sm cut off before its response would be retried after the restart
    // and reach the citizen twice: let the outstanding ones be answered first.
    for (const until = Date.now() + DRAIN_WAIT_MS; this.gate.inFlight > 0 && Date.now() < until; ) await sleep(20);
    if (link && !link.closed) {
      if (link.bound) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, UNBIND_WAIT_MS);
          const sent = link.session.unbind(() => {
            clearTimeout(timer);
            resolve();
          });
          if (!sent) {
            clearTimeout(timer);
            resolve();
          }
        });
      }
      this.closeLink(link, 'stopping', true);
    }
    this.link = null;
  }

  status(): Record<string, unknown> {
    return {
      on: true,
      connected: this.link !== null && !this.link.closed,
      bound: this.link?.bound === true,
      paused: this.link?.paused === true,
      binds: this.binds,
      inflight: this.inflightMo,
      submitsOutstanding: this.gate.inFlight,
      submitsQueued: this.gate.queued,
      lastError: this.lastError,
    };
  }

  // -------------------------------------------------------------------------
  // Session: connect, bind, keep alive, reconnect

  private connect(): void {
    if (this.stopping) return;
    const { host, port, tls, systemId, password } = this.target;
    const session = smpp.connect({ host, port, tls });
    const link: Link = {
      session,
      bound: false,
      closed: false,
      paused: false,
      enquirePendingSince: null,
      enquireTimer: null,
      bindTimer: null,
      pendingSubmits: new Set(),
    };
    this.link = link;
    link.bindTimer = setTimeout(() => {
      this.lastError = `no bind within ${BIND_TIMEOUT_MS} ms`;
      this.logger.warn({ host, port }, 'SMPP connect/bind timed out');
      this.closeLink(link, 'bind timeout');
    }, BIND_TIMEOUT_MS);

    session.on(tls ? 'secureConnect' : 'connect', () => {
      // Nagle off: every PDU here is small and the peer waits for it (deliver_sm_resp,
      // enquire_link_resp). With Nagle on, a PDU written while the previous one is still
      // unacknowledged (a receipt's submit_sm right after a deliver_sm_resp) is held until
      // the SMSC's delayed ACK fires, about 40 ms on Linux, and the exchange stalls.
      // node-smpp never sets it and net sockets default to Nagle on. It takes both ends:
      // with Nagle off here only, the SMSC's own Nagle holds its next deliver_sm behind our
      // delayed ACK instead (SMS_TCP_NODELAY=false for such a peer).
      session.socket.setNoDelay(this.config.SMS_TCP_NODELAY);
      session.bind_transceiver({ system_id: systemId, password, interface_version: 0x34 }, (resp) => {
        if (link.closed) return;
        if (resp.command_status !== ESME_ROK) {
          this.lastError = `bind_transceiver refused: ${statusName(resp.command_status)}`;
          this.logger.error({ host, port, status: statusName(resp.command_status) }, 'SMPP bind refused');
          this.closeLink(link, 'bind refused');
          return;
        }
        if (link.bindTimer) clearTimeout(link.bindTimer);
        link.bindTimer = null;
        link.bound = true;
        this.binds++;
        this.reconnectAttempt = 0;
        this.lastError = null;
        this.logger.info({ host, port, smsc: resp.system_id }, 'SMPP bound as transceiver');
        this.startEnquireLink(link);
        this.updateReading();
        this.gate.pump();
      });
    });
    session.on('error', (err: Error) => {
      this.lastError = errorMessage(err);
      this.logger.warn({ err: errorMessage(err) }, 'SMPP connection error');
      // A parse error leaves the stream unusable; 'close' follows socket errors.
      this.closeLink(link, 'error');
    });
    session.on('close', () => this.onClosed(link));

    // node-smpp answers nothing by itself: every request from the SMSC is answered here.
    session.on('enquire_link', (pdu: smpp.PDU) => {
      session.send(pdu.response());
    });
    session.on('unbind', (pdu: smpp.PDU) => {
      this.logger.info('SMSC unbound the session; reconnecting');
      link.bound = false;
      // Close once unbind_resp is written, so the SMSC sees the answer before the FIN.
      const sent = session.send(pdu.response(), () => this.closeLink(link, 'unbind by SMSC', true));
      if (!sent) this.closeLink(link, 'unbind by SMSC');
    });
    session.on('deliver_sm', (pdu: smpp.PDU) => void this.onMo(link, pdu));
    session.on('data_sm', (pdu: smpp.PDU) => void this.onMo(link, pdu));
    session.on('pdu', (pdu: smpp.PDU) => {
      if (link.enquirePendingSince !== null && pdu.command === 'enquire_link_resp') link.enquirePendingSince = null;
      if (pdu.isResponse()) return;
      if (pdu.command === 'unknown') {
        session.send(pdu.response());
      } else if (!['enquire_link', 'unbind', 'deliver_sm', 'data_sm', 'alert_notification', 'outbind'].includes(pdu.command)) {
        session.send(pdu.response({ command_status: ESME_RINVCMDID }));
      }
    });
  }

  private startEnquireLink(link: Link): void {
    const period = this.config.SMS_ENQUIRE_LINK;
    if (period <= 0) return;
    link.enquireTimer = setInterval(() => {
      // While reading is paused no response can be read, so silence proves nothing.
      if (link.closed || link.paused) return;
      if (link.enquirePendingSince !== null) {
        this.lastError = 'enquire_link unanswered';
        this.logger.warn({ waitedMs: Date.now() - link.enquirePendingSince }, 'SMSC did not answer enquire_link; rebuilding the link');
        this.closeLink(link, 'keep-alive timeout');
        return;
      }
      link.enquirePendingSince = Date.now();
      link.session.enquire_link();
    }, period);
    link.enquireTimer.unref();
  }

  /** `graceful`: end the socket after what is written (unbind exchanged), else drop it now. */
  private closeLink(link: Link, why: string, graceful = false): void {
    if (link.closed) return;
    link.closed = true;
    link.bound = false;
    if (link.bindTimer) clearTimeout(link.bindTimer);
    if (link.enquireTimer) clearInterval(link.enquireTimer);
    link.bindTimer = link.enquireTimer = null;
    for (const fail of link.pendingSubmits) fail(new GatewayError('SEND_TRANSIENT', `SMPP link closed (${why}) before submit_sm_resp`));
    link.pendingSubmits.clear();
    if (graceful) {
      link.session.close();
      setTimeout(() => link.session.destroy(), 1000).unref();
    } else {
      link.session.destroy();
    }
    this.onClosed(link);
  }

  private onClosed(link: Link): void {
    if (!link.closed) this.closeLink(link, 'connection closed');
    if (this.link !== link) return;
    this.link = null;
    if (this.stopping) return;
    const min = Math.max(10, this.config.SMS_RECONNECT_MIN);
    const max = Math.max(min, this.config.SMS_RECONNECT_MAX);
    const base = Math.min(max, min * 2 ** Math.min(this.reconnectAttempt, 20));
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    this.reconnectAttempt++;
    this.logger.info({ delayMs: delay, attempt: this.reconnectAttempt }, 'SMPP link down; reconnecting');
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.connect();
    }, delay);
  }

  // -------------------------------------------------------------------------
  // Backpressure

  private setPaused(link: Link, paused: boolean): void {
    if (link.paused === paused || link.closed) return;
    link.paused = paused;
    if (paused) {
      link.session.pause();
      this.logger.info({ inflight: this.inflightMo }, 'SMPP reading paused');
    } else {
      link.session.resume();
      this.logger.info('SMPP reading resumed');
    }
  }

  /** Stop reading while the outbox is deep or too many deliver_sm are being stored; resume when both fall. */
  private updateReading(): void {
    const link = this.link;
    if (!link || link.closed || !this.intake) return;
    const backlog = !this.stopping && this.intake.backlogHigh();
    const pause = backlog || this.inflightMo >= MAX_INFLIGHT_MO;
    this.setPaused(link, pause);
  }

  private waitIdle(ms: number): Promise<void> {
    if (this.inflightMo === 0) return Promise.resolve();
    return Promise.race([new Promise<void>((resolve) => this.idle.push(resolve)), sleep(ms)]);
  }

  // -------------------------------------------------------------------------
  // Mobile-originated messages

  private async onMo(link: Link, pdu: smpp.PDU): Promise<void> {
    this.inflightMo++;
    this.updateReading();
    let status: number;
    try {
      status = this.stopping ? this.config.SMS_RETRY_STATUS : await this.handleMo(pdu);
    } catch (err) {
      status = await this.onMoError(pdu, err);
    } finally {
      this.inflightMo--;
      if (this.inflightMo === 0) for (const f of this.idle.splice(0)) f();
    }
    // If the link dropped meanwhile the SMSC never saw an answer and delivers again.
    if (!link.closed) link.session.send(pdu.response({ command_status: status }));
    this.updateReading();
  }

  /**
   * A transient failure (store unavailable, shutting down) asks the SMSC to deliver
   * again. A permanent one would fail the same way on every retry, so the input is
   * recorded as rejected and acknowledged instead of looping between SMSC and gateway.
   */
  private async onMoError(pdu: smpp.PDU, err: unknown): Promise<number> {
    if (isTransient(err) || !this.intake) {
      this.logger.warn({ err: errorMessage(err), code: errorCode(err) }, 'deliver_sm not stored; asking the SMSC to retry');
      return this.config.SMS_RETRY_STATUS;
    }
    try {
      const raw = rawPdu(pdu as unknown as Record<string, unknown>);
      await this.intake.reject({ channel: 'sms', reason: 'parse_error', detail: `${errorCode(err)}: ${errorMessage(err)}`, raw });
      return ESME_ROK;
    } catch (again) {
      this.logger.warn({ err: errorMessage(again), code: errorCode(again) }, 'deliver_sm not recorded; asking the SMSC to retry');
      return this.config.SMS_RETRY_STATUS;
    }
  }

  private async handleMo(pdu: smpp.PDU): Promise<number> {
    const intake = this.intake!;
    const c = classify(pdu as unknown as Record<string, unknown>, { serviceNumber: this.config.SMS_SERVICE_NUMBER });
    switch (c.kind) {
      case 'receipt':
        if (!c.receipt) {
          await intake.reject({ channel: 'sms', reason: 'parse_error', detail: 'delivery receipt without message id or state', raw: c.raw });
        } else {
          await this.deliveryReport(c.receipt);
        }
        return ESME_ROK;
      case 'reject':
        await intake.reject({ channel: 'sms', reason: c.reason, detail: c.detail, raw: c.raw });
        return ESME_ROK;
      case 'segment': {
        const seg = c.segment;
        if (seg.meta.total === 1) {
          await this.finish([seg], undefined);
          return ESME_ROK;
        }
        const group = groupOf(seg.meta);
        await this.withGroup(group, () => this.storeSegment(group, seg));
        return ESME_ROK;
      }
    }
  }

  private async deliveryReport(r: Receipt): Promise<void> {
    const intake = this.intake!;
    const ids = [r.id, ...receiptIdVariants(r.id)];
    let matched = false;
    // A fast SMSC can send the receipt before the dispatcher has recorded the
    // message_id of submit_sm_resp: look again a few times before giving up.
    for (const wait of [0, ...RECEIPT_RETRY_MS]) {
      if (wait) await sleep(wait);
      for (const id of ids) {
        matched = await intake.deliveryReport('sms', id, r.stat);
        if (matched) break;
      }
      if (matched || this.stopping) break;
    }
    this.logger.info({ upstreamId: r.id, stat: r.stat, err: r.err, matched }, 'SMS delivery receipt');
  }

  /** Serialize work on one parts group (segments of one message, and the sweep). */
  private withGroup<T>(group: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.groupLocks.get(group) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => {});
    this.groupLocks.set(group, tail);
    void tail.then(() => {
      if (this.groupLocks.get(group) === tail) this.groupLocks.delete(group);
    });
    return run;
  }

  private async storeSegment(group: string, seg: Segment): Promise<void> {
    const state = this.state!;
    // Every segment is kept, even one that looks like a copy of a segment already
    // turned into a ticket: a phone that reuses its concatenation reference sends a
    // new message whose first segments may be byte-identical to the last one's.
    // Copies that never complete a message are recognised by the sweep instead.
    const stored = await state.putPart(group, seg.meta.seq, seg.body, encodePartMeta(seg.meta));
    const parts = this.toSegments(stored);
    if (new Set(parts.map((p) => p.meta.seq)).size < seg.meta.total) return;
    await this.finish(parts, group);
  }

  private toSegments(stored: StoredPart[]): Segment[] {
    const out: Segment[] = [];
    for (const p of stored) {
      const meta = decodePartMeta(p.meta);
      if (meta) out.push({ meta, body: p.data, receivedAt: p.receivedAt });
      else this.logger.warn({ index: p.index }, 'stored SMS segment has unreadable metadata; skipped');
    }
    return out;
  }

  /** Turn the segments held (all, or what arrived before the timeout) into a ticket or a rejected-input record. */
  private async finish(parts: Segment[], group: string | undefined): Promise<void> {
    const intake = this.intake!;
    const state = this.state!;
    const opts = { serviceNumber: this.config.SMS_SERVICE_NUMBER, dedupeWindowMs: this.config.SMS_DEDUPE_WINDOW, ...(group ? { group } : {}) };
    const a = assemble(parts, opts);
    // Remember the message's segments before its ticket is committed: should the
    // gateway die between the commit and deliver_sm_resp, the SMSC sends the last
    // segment again, and the sweep must recognise that lone copy. Written first it
    // cannot lose anything: the sweep only drops *incomplete* groups made of copies.
    if (group) await this.recordDone(group, parts);
    if (a.kind === 'reject') {
      await intake.reject({ channel: 'sms', reason: a.reason, detail: a.detail, raw: a.raw });
      if (group) await state.dropParts(group);
      return;
    }
    const result = await intake.accept(a.inbound);
    // Created and follow-up drop the parts in the ticket's transaction; a duplicate or an empty message does not.
    if (group && result.status !== 'created' && result.status !== 'followup') await state.dropParts(group);
    if (result.status !== 'rejected' && result.status !== 'query') {
      this.logger.debug({ ticketId: result.ticket.id, status: result.status, segments: parts.length, incomplete: a.inbound.incomplete }, 'SMS accepted');
    }
  }

  private async recordDone(group: string, parts: Segment[]): Promise<void> {
    try {
      const state = this.state!;
      const key = doneKeyOf(parts[0]!.meta);
      const next = recordDone(parseDone(await state.get(key)), group, parts, this.ctx!.clock.now(), this.config.SMS_DEDUPE_WINDOW);
      await state.set(key, JSON.stringify(next));
    } catch (err) {
      // Only duplicate detection suffers; the message itself goes on to the intake.
      this.logger.warn({ err: errorMessage(err) }, 'could not record an SMS for duplicate detection');
    }
  }

  /** Publish messages whose missing segments did not arrive within SMS_REASSEMBLY_TIMEOUT, marked incomplete. */
  private sweep(): Promise<void> {
    if (this.sweeping || this.stopping || !this.state) return this.sweeping ?? Promise.resolve();
    this.sweeping = this.doSweep()
      .catch((err: unknown) => {
        this.logger.warn({ err: errorMessage(err) }, 'SMS reassembly sweep failed; will retry');
      })
      .finally(() => {
        this.sweeping = null;
      });
    return this.sweeping;
  }

  private async doSweep(): Promise<void> {
    const state = this.state!;
    for (;;) {
      if (this.stopping) return;
      const now = this.ctx!.clock.now();
      const groups = await state.staleGroups(new Date(now - this.config.SMS_REASSEMBLY_TIMEOUT), STALE_BATCH);
      for (const group of groups) {
        if (this.stopping) return;
        await this.withGroup(group, async () => {
          const parts = this.toSegments(await state.getParts(group));
          if (parts.length === 0) {
            await state.dropParts(group);
            return;
          }
          const complete = new Set(parts.map((p) => p.meta.seq)).size >= parts[0]!.meta.total;
          const done = parseDone(await state.get(doneKeyOf(parts[0]!.meta)));
          const copies = parts.every((p) => isDoneDuplicate(done, group, p.meta, p.receivedAt?.getTime() ?? now, this.config.SMS_DEDUPE_WINDOW));
          // A complete group is always handed to the intake (which knows whether it is
          // already a ticket); an incomplete one made only of copies is dropped.
          if (copies && !complete) {
            // Only late copies of segments of a message that already became a ticket
            // (the SMSC did not see our answer in time and sent them again).
            this.logger.info({ group, have: parts.length }, 'dropping redelivered segments of an accepted SMS');
            await state.dropParts(group);
            return;
          }
          if (!complete) {
            this.logger.info({ group, have: parts.length, total: parts[0]!.meta.total }, 'SMS segments missing after the reassembly timeout; publishing what arrived');
          }
          try {
            await this.finish(parts, group);
          } catch (err) {
            // Transient: the whole sweep is retried later. Permanent: it would fail the
            // same way every time and hold up the groups behind it, so record and drop it.
            if (isTransient(err)) throw err;
            await this.intake!.reject({ channel: 'sms', reason: 'parse_error', detail: `${errorCode(err)}: ${errorMessage(err)}`, raw: JSON.stringify(parts.map((p) => p.meta)) });
            await state.dropParts(group);
          }
        });
      }
      if (groups.length < STALE_BATCH) return;
    }
  }

  // -------------------------------------------------------------------------
  // Outgoing: receipts and replies

  async send(msg: OutboundMessage): Promise<SendResult> {
    if (this.stopping) throw new GatewayError('SEND_TRANSIENT', 'SMS channel is stopping');
    const destination = digitsOf(msg.citizen.channelUserId);
    if (!destination) throw new GatewayError('SEND_PERMANENT', 'no phone number to send the SMS to', { detail: { channelUserId: msg.citizen.channelUserId } });
    const ext = typeof msg.source.extension === 'string' ? digitsOf(msg.source.extension) : '';
    // Reply from the number the citizen wrote to, so an answer to it reaches the same extension.
    const source = `${this.config.SMS_SERVICE_NUMBER}${ext}`;
    // A retry after some parts went out sends only the rest, under the same
    // reference, so the handset still joins them into one message.
    const partial = this.partialSends.get(msg.id);
    const ref = partial?.ref ?? this.nextRef;
    let encoded;
    try {
      encoded = encodeOutgoing(msg.text, ref);
    } catch (err) {
      if (err instanceof TextTooLongError) throw new GatewayError('SEND_PERMANENT', err.message, { detail: { parts: err.parts } });
      throw err;
    }
    if (!partial && encoded.parts.length > 1) this.nextRef = (this.nextRef + 1) & 0xff;
    // Answer in the numbering plan the SMSC used for the citizen's own message.
    const ton = typeof msg.source.sourceTon === 'number' ? msg.source.sourceTon : destination.startsWith('86') && destination.length === 13 ? 1 : 0;
    const npi = typeof msg.source.sourceNpi === 'number' ? msg.source.sourceNpi : 1;

    const sent = partial?.sent ?? new Map<number, string>();
    for (let i = 0; i < encoded.parts.length; i++) {
      if (sent.has(i)) continue;
      try {
        const messageId = await this.submit({
          source_addr_ton: 0,
          source_addr_npi: 0,
          source_addr: source,
          dest_addr_ton: ton,
          dest_addr_npi: npi,
          destination_addr: destination,
          esm_class: encoded.esmClass,
          registered_delivery: 0x01,
          data_coding: encoded.dataCoding,
          short_message: encoded.parts[i],
        });
        sent.set(i, messageId);
      } catch (err) {
        if (sent.size > 0) this.rememberPartial(msg.id, { ref, sent });
        throw err;
      }
    }
    this.partialSends.delete(msg.id);
    return { via: 'smpp', upstreamId: sent.get(0) ?? null };
  }

  private rememberPartial(id: string, p: PartialSend): void {
    this.partialSends.delete(id);
    this.partialSends.set(id, p);
    while (this.partialSends.size > PARTIAL_SENDS_MAX) this.partialSends.delete(this.partialSends.keys().next().value!);
  }

  private async submit(fields: Record<string, unknown>): Promise<string> {
    await this.gate.acquire(SUBMIT_WAIT_MS);
    const link = this.link;
    if (!link || !link.bound || link.closed) {
      this.gate.release();
      throw new GatewayError('SEND_TRANSIENT', 'SMPP link is not bound');
    }
    return new Promise<string>((resolve, reject) => {
      let settled = false;
      const settle = (fn: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        link.pendingSubmits.delete(fail);
        this.gate.release();
        fn();
      };
      const fail = (err: Error) => settle(() => reject(err));
      const timer = setTimeout(() => fail(new GatewayError('TIMEOUT', `no submit_sm_resp within ${SUBMIT_TIMEOUT_MS} ms`)), SUBMIT_TIMEOUT_MS);
      link.pendingSubmits.add(fail);
      const sent = link.session.submit_sm(fields, (resp) => {
        const status = resp.command_status;
        if (status === ESME_ROK) {
          settle(() => resolve(String(resp.message_id ?? '')));
          return;
        }
        const detail = { command_status: status, name: statusName(status) };
        if (status === ESME_RTHROTTLED) this.gate.throttle(1000);
        if (TRANSIENT_SUBMIT.has(status)) fail(new GatewayError('SEND_TRANSIENT', `SMSC answered submit_sm with ${detail.name}`, { detail }));
        else fail(new GatewayError('SEND_PERMANENT', `SMSC refused submit_sm: ${detail.name}`, { detail }));
      });
      if (!sent) fail(new GatewayError('SEND_TRANSIENT', 'SMPP socket not writable'));
    });
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

export function createSmsAdapter(config: Config, logger: Logger): ChannelAdapter | null {
  return new SmsAdapter(config, logger.child({ channel: 'sms' }));
}
