import type { AddressInfo } from 'node:net';
import iconv from 'iconv-lite';
import smpp from 'smpp';
import { useRawSmppMessages } from '../../src/channels/sms/smpp-raw.js';

/**
 * A real SMPP 3.4 peer playing the operator's SMSC, built on `smpp.createServer`,
 * listening on 127.0.0.1 with an ephemeral port. It accepts bind_transceiver,
 * answers enquire_link and unbind, sends deliver_sm (mobile-originated messages,
 * segments, delivery receipts), records every submit_sm, and can misbehave on
 * purpose (refuse binds, throttle, hold responses, drop the connection).
 *
 * Text encodings here deliberately avoid the gateway's own codec: GSM through the
 * smpp package's gsmCoder, UCS-2 through Buffer, GBK through iconv-lite, so a test
 * compares two independent implementations.
 */

export const SERVICE_NUMBER = '106353112345';

export type Coding = 0 | 1 | 3 | 8 | 15;

/** The octets a handset would send for `text` in `coding`. */
export function encodeText(text: string, coding: Coding): Buffer {
  switch (coding) {
    case 0:
      return smpp.gsmCoder.encode(text, 0);
    case 1:
      return Buffer.from(text, 'ascii');
    case 3:
      return Buffer.from(text, 'latin1');
    case 8:
      return Buffer.from(text, 'utf16le').swap16();
    case 15:
      return iconv.encode(text, 'gbk');
  }
}

/**
 * `text` as GSM 7-bit septets **packed** eight to seven octets (23.038 §6.1.2.1.1),
 * low bits first, after `fillBits` zero bits (a UDH before them needs 0–6 to end
 * on a septet boundary): the air-interface form some SMSCs forward under
 * data_coding 0. Septets come from the smpp package's gsmCoder.
 */
export function packGsm7(text: string, fillBits = 0): Buffer {
  return packSeptets(smpp.gsmCoder.encode(text, 0), fillBits);
}

/** Septet values (0–127) packed as `packGsm7` does. */
export function packSeptets(septets: Uint8Array | number[], fillBits = 0): Buffer {
  const out = Buffer.alloc(Math.ceil((fillBits + septets.length * 7) / 8));
  let bit = fillBits;
  for (const septet of septets) {
    for (let i = 0; i < 7; i++, bit++) if (septet & (1 << i)) out[bit >> 3]! |= 1 << (bit & 7);
  }
  return out;
}

/** Fill bits between a UDH of `udhOctets` octets (UDHL included) and packed septets (23.040 §9.2.3.24). */
export function fillBitsAfter(udhOctets: number): number {
  return (7 - ((udhOctets * 8) % 7)) % 7;
}

export function decodeText(bytes: Buffer, coding: number): string {
  if (coding === 8) return Buffer.from(bytes).swap16().toString('utf16le');
  if (coding === 0) return smpp.gsmCoder.decode(bytes, 0);
  if (coding === 15) return iconv.decode(bytes, 'gbk');
  return bytes.toString('latin1');
}

export type ConcatMethod = 'udh8' | 'udh16' | 'sar';

export interface SegmentOptions {
  method: ConcatMethod;
  ref: number;
  /** Number of segments; the bytes are cut evenly, ignoring character boundaries (as some phones do). */
  parts: number;
  /** Explicit cut points (byte offsets) instead of even cuts. */
  cuts?: number[];
}

/** deliver_sm fields for each segment of `body` (already encoded bytes). */
export function segmentFields(body: Buffer, opts: SegmentOptions): Record<string, unknown>[] {
  const cuts = opts.cuts ?? Array.from({ length: opts.parts - 1 }, (_, i) => Math.round(((i + 1) * body.length) / opts.parts));
  const bounds = [0, ...cuts, body.length];
  const total = bounds.length - 1;
  const out: Record<string, unknown>[] = [];
  for (let i = 0; i < total; i++) {
    const chunk = body.subarray(bounds[i], bounds[i + 1]);
    const seq = i + 1;
    if (opts.method === 'sar') {
      out.push({ short_message: chunk, sar_msg_ref_num: opts.ref & 0xffff, sar_total_segments: total, sar_segment_seqnum: seq });
    } else {
      const udh =
        opts.method === 'udh8'
          ? Buffer.from([5, 0x00, 3, opts.ref & 0xff, total, seq])
          : Buffer.from([6, 0x08, 4, (opts.ref >> 8) & 0xff, opts.ref & 0xff, total, seq]);
      out.push({ esm_class: 0x40, short_message: Buffer.concat([udh, chunk]) });
    }
  }
  return out;
}

export interface RecordedSubmit {
  at: number;
  messageId: string;
  commandStatus: number;
  source: string;
  destination: string;
  destTon: number;
  destNpi: number;
  dataCoding: number;
  esmClass: number;
  registeredDelivery: number;
  /** short_message octets as received, UDH included. */
  shortMessage: Buffer;
  concat: { ref: number; total: number; seq: number } | null;
  /** Text octets without the UDH. */
  body: Buffer;
}

export interface SentMessage {
  source: string;
  destination: string;
  dataCoding: number;
  text: string;
  parts: RecordedSubmit[];
  messageIds: string[];
}

export interface SmscOptions {
  systemId?: string;
  password?: string;
  /** command_status for each accepted submit_sm (default ESME_ROK). */
  submitStatus?: (submit: RecordedSubmit, index: number) => number;
  /** Send a delivery receipt (stat:DELIVRD) for each accepted submit_sm that asked for one. */
  autoReceipts?: boolean;
}

interface Waiter {
  check: () => boolean;
  resolve: () => void;
}

export class TestSmsc {
  readonly server: smpp.Server;
  port = 0;
  /** Successful binds so far (the gateway reconnecting shows up as a second bind). */
  binds = 0;
  bindAttempts = 0;
  enquireLinks = 0;
  unbindsReceived = 0;
  readonly submits: RecordedSubmit[] = [];
  /** Every PDU from the bound ESME in the order it arrived (commands and sequence numbers), to check what the gateway writes first. */
  readonly arrivals: { command: string; sequence: number }[] = [];
  /** The highest number of submit_sm awaiting our response at once. */
  maxOutstanding = 0;
  /** Refuse binds with this status while set. */
  bindStatus = 0;
  submitStatus: (submit: RecordedSubmit, index: number) => number;
  autoReceipts: boolean;
  private readonly systemId: string;
  private readonly password: string;
  private session: smpp.Session | null = null;
  private held: (() => void)[] | null = null;
  private outstanding = 0;
  private nextId = 1;
  private waiters: Waiter[] = [];

  private constructor(opts: SmscOptions) {
    useRawSmppMessages();
    this.systemId = opts.systemId ?? 'hotline';
    this.password = opts.password ?? 'secret';
    this.submitStatus = opts.submitStatus ?? (() => 0);
    this.autoReceipts = opts.autoReceipts ?? false;
    this.server = smpp.createServer((s) => this.onSession(s));
  }

  static async start(opts: SmscOptions = {}): Promise<TestSmsc> {
    const smsc = new TestSmsc(opts);
    await new Promise<void>((resolve, reject) => {
      smsc.server.once('error', reject);
      smsc.server.listen(0, '127.0.0.1', () => resolve());
    });
    smsc.port = (smsc.server.address() as AddressInfo).port;
    return smsc;
  }

  /** SMPP_URL for the gateway. */
  get url(): string {
    return `smpp://${this.systemId}:${this.password}@127.0.0.1:${this.port}`;
  }

  get bound(): boolean {
    return this.session !== null;
  }

  private onSession(s: smpp.Session): void {
    // deliver() waits on 'close' once per outstanding PDU; a benchmark keeps many outstanding.
    s.setMaxListeners(0);
    // Nagle off, as the gateway's side is: with it on, this SMSC's deliver_sm written
    // right after a submit_sm_resp waits for the gateway's delayed ACK (≈40 ms).
    s.socket.setNoDelay(true);
    s.on('error', () => {});
    s.on('pdu', (pdu) => {
      if (this.session === s) this.arrivals.push({ command: pdu.command, sequence: pdu.sequence_number });
    });
    s.on('bind_transceiver', (pdu) => {
      this.bindAttempts++;
      const ok = this.bindStatus === 0 && pdu.system_id === this.systemId && pdu.password === this.password;
      if (!ok) {
        s.send(pdu.response({ command_status: this.bindStatus || smpp.ESME_RBINDFAIL }));
        s.close();
        return;
      }
      s.send(pdu.response({ system_id: 'TESTSMSC' }));
      this.session = s;
      this.binds++;
      this.notify();
    });
    s.on('enquire_link', (pdu) => {
      this.enquireLinks++;
      s.send(pdu.response());
      this.notify();
    });
    s.on('unbind', (pdu) => {
      this.unbindsReceived++;
      s.send(pdu.response());
      if (this.session === s) this.session = null;
      s.close();
      this.notify();
    });
    s.on('submit_sm', (pdu) => this.onSubmit(s, pdu));
    s.on('close', () => {
      if (this.session === s) this.session = null;
      this.notify();
    });
  }

  private onSubmit(s: smpp.Session, pdu: smpp.PDU): void {
    const sm = Buffer.isBuffer(pdu.short_message) ? pdu.short_message : Buffer.alloc(0);
    const esmClass = Number(pdu.esm_class ?? 0);
    let concat: RecordedSubmit['concat'] = null;
    let body = sm;
    if (esmClass & 0x40 && sm.length > 0) {
      const udhl = sm[0]!;
      body = sm.subarray(udhl + 1);
      for (let at = 1; at < udhl + 1; at += 2 + sm[at + 1]!) {
        if (sm[at] === 0x00) concat = { ref: sm[at + 2]!, total: sm[at + 3]!, seq: sm[at + 4]! };
        if (sm[at] === 0x08) concat = { ref: sm.readUInt16BE(at + 2), total: sm[at + 4]!, seq: sm[at + 5]! };
      }
    }
    const record: RecordedSubmit = {
      at: Date.now(),
      messageId: (0xa0000000 + this.nextId++).toString(16),
      commandStatus: 0,
      source: String(pdu.source_addr),
      destination: String(pdu.destination_addr),
      destTon: Number(pdu.dest_addr_ton ?? 0),
      destNpi: Number(pdu.dest_addr_npi ?? 0),
      dataCoding: Number(pdu.data_coding ?? 0),
      esmClass,
      registeredDelivery: Number(pdu.registered_delivery ?? 0),
      shortMessage: Buffer.from(sm),
      concat,
      body: Buffer.from(body),
    };
    this.outstanding++;
    this.maxOutstanding = Math.max(this.maxOutstanding, this.outstanding);
    const respond = () => {
      this.outstanding--;
      record.commandStatus = this.submitStatus(record, this.submits.length);
      this.submits.push(record);
      s.send(pdu.response(record.commandStatus === 0 ? { message_id: record.messageId } : { command_status: record.commandStatus }));
      if (record.commandStatus === 0 && this.autoReceipts && record.registeredDelivery & 1) {
        void this.deliverReceipt(record.messageId, 'DELIVRD', { destination: record.source, source: record.destination }).catch(() => {});
      }
      this.notify();
    };
    if (this.held) this.held.push(respond);
    else respond();
  }

  /** Stop answering submit_sm until `releaseSubmits` (to observe the gateway's window). */
  holdSubmits(): void {
    this.held ??= [];
  }

  releaseSubmits(): void {
    const held = this.held ?? [];
    this.held = null;
    for (const respond of held) respond();
  }

  get heldSubmits(): number {
    return this.held?.length ?? 0;
  }

  private notify(): void {
    this.waiters = this.waiters.filter((w) => {
      if (!w.check()) return true;
      w.resolve();
      return false;
    });
  }

  /** Resolve when `check` holds (re-evaluated on every SMSC event and every 20 ms). */
  waitUntil(check: () => boolean, timeoutMs = 10_000, what = 'condition'): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const poll = setInterval(() => this.notify(), 20);
      const timer = setTimeout(() => {
        clearInterval(poll);
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`test SMSC: timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const waiter: Waiter = {
        check,
        resolve: () => {
          clearInterval(poll);
          clearTimeout(timer);
          resolve();
        },
      };
      this.waiters.push(waiter);
    });
  }

  waitForBind(binds = 1, timeoutMs = 10_000): Promise<void> {
    return this.waitUntil(() => this.binds >= binds && this.session !== null, timeoutMs, `bind #${binds}`);
  }

  waitForSubmits(count: number, timeoutMs = 10_000): Promise<void> {
    return this.waitUntil(() => this.submits.length >= count, timeoutMs, `${count} submit_sm`);
  }

  /** Accepted submits joined into messages (by destination and concatenation reference). */
  messages(): SentMessage[] {
    const out: SentMessage[] = [];
    const open = new Map<string, RecordedSubmit[]>();
    for (const s of this.submits.filter((x) => x.commandStatus === 0)) {
      if (!s.concat) {
        out.push({ source: s.source, destination: s.destination, dataCoding: s.dataCoding, text: decodeText(s.body, s.dataCoding), parts: [s], messageIds: [s.messageId] });
        continue;
      }
      const key = `${s.destination}/${s.concat.ref}/${s.concat.total}`;
      const parts = open.get(key) ?? [];
      if (!parts.some((p) => p.concat!.seq === s.concat!.seq)) parts.push(s);
      open.set(key, parts);
      if (parts.length === s.concat.total) {
        open.delete(key);
        parts.sort((a, b) => a.concat!.seq - b.concat!.seq);
        const body = Buffer.concat(parts.map((p) => p.body));
        out.push({
          source: s.source,
          destination: s.destination,
          dataCoding: s.dataCoding,
          text: decodeText(body, s.dataCoding),
          parts,
          messageIds: parts.map((p) => p.messageId),
        });
      }
    }
    return out;
  }

  async waitForMessage(predicate: (m: SentMessage) => boolean, timeoutMs = 10_000): Promise<SentMessage> {
    await this.waitUntil(() => this.messages().some(predicate), timeoutMs, 'a matching submitted message');
    return this.messages().find(predicate)!;
  }

  private requireSession(): smpp.Session {
    if (!this.session) throw new Error('test SMSC: no bound ESME');
    return this.session;
  }

  /**
   * Send one deliver_sm (defaults: from 13800138000 to the service number, UCS-2)
   * and resolve with the gateway's deliver_sm_resp command_status.
   */
  deliver(fields: Record<string, unknown>, timeoutMs = 10_000): Promise<number> {
    const s = this.requireSession();
    const pdu = new smpp.PDU('deliver_sm', {
      source_addr: '13800138000',
      source_addr_ton: 1,
      source_addr_npi: 1,
      destination_addr: SERVICE_NUMBER,
      data_coding: 8,
      ...fields,
    });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        s.removeListener('close', onClose);
        reject(new Error(`test SMSC: no deliver_sm_resp within ${timeoutMs} ms`));
      }, timeoutMs);
      const onClose = () => {
        clearTimeout(timer);
        reject(new Error('test SMSC: connection closed before deliver_sm_resp'));
      };
      s.once('close', onClose);
      const sent = s.send(pdu, (resp) => {
        clearTimeout(timer);
        s.removeListener('close', onClose);
        resolve(resp.command_status);
      });
      if (!sent) onClose();
    });
  }

  /** A whole message in one deliver_sm. */
  deliverText(text: string, opts: { coding?: Coding; from?: string; to?: string; extra?: Record<string, unknown> } = {}): Promise<number> {
    const coding = opts.coding ?? 8;
    return this.deliver({
      source_addr: opts.from ?? '13800138000',
      destination_addr: opts.to ?? SERVICE_NUMBER,
      data_coding: coding,
      short_message: encodeText(text, coding),
      ...opts.extra,
    });
  }

  /** deliver_sm fields of each segment of `text`, for the caller to send in any order. */
  segments(text: string, opts: SegmentOptions & { coding?: Coding; from?: string; to?: string }): Record<string, unknown>[] {
    const coding = opts.coding ?? 8;
    return segmentFields(encodeText(text, coding), opts).map((f) => ({
      source_addr: opts.from ?? '13800138000',
      destination_addr: opts.to ?? SERVICE_NUMBER,
      data_coding: coding,
      ...f,
    }));
  }

  /** A delivery receipt for one of the gateway's submit_sm (text form, or TLVs with `tlv`). */
  deliverReceipt(messageId: string, stat: string, opts: { tlv?: boolean; source?: string; destination?: string } = {}): Promise<number> {
    const text = `id:${messageId} sub:001 dlvrd:${stat === 'DELIVRD' ? '001' : '000'} submit date:2611231400 done date:2611231401 stat:${stat} err:000 text:`;
    const states: Record<string, number> = { DELIVRD: 2, EXPIRED: 3, DELETED: 4, UNDELIV: 5, ACCEPTD: 6, UNKNOWN: 7, REJECTD: 8 };
    return this.deliver({
      source_addr: opts.source ?? '13800138000',
      destination_addr: opts.destination ?? SERVICE_NUMBER,
      esm_class: 0x04,
      data_coding: 0,
      short_message: Buffer.from(text, 'latin1'),
      ...(opts.tlv ? { receipted_message_id: messageId, message_state: states[stat] ?? 7 } : {}),
    });
  }

  /** The SMSC probes the link; resolves with the gateway's enquire_link_resp status. */
  enquireLink(timeoutMs = 5000): Promise<number> {
    const s = this.requireSession();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('test SMSC: no enquire_link_resp')), timeoutMs);
      s.enquire_link((resp) => {
        clearTimeout(timer);
        resolve(resp.command_status);
      });
    });
  }

  /** The SMSC ends the session politely (maintenance): unbind, then close. */
  async unbindClient(timeoutMs = 5000): Promise<void> {
    const s = this.requireSession();
    this.session = null;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      s.unbind(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    s.close();
  }

  /** Cut every connection at once, without unbind (network failure, SMSC crash). */
  dropConnections(): void {
    this.session = null;
    for (const s of [...this.server.sessions]) s.destroy();
  }

  async close(): Promise<void> {
    this.dropConnections();
    this.waiters = [];
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
