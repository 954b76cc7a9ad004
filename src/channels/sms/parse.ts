import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { Inbound } from '../types.js';
import { codingInfo, decodeBytes } from './coding.js';
import { readPackedGsm7 } from './gsm7.js';

/**
 * Pure SMPP intake logic: a decoded deliver_sm/data_sm (with raw message bytes,
 * see smpp-raw.ts) → a delivery receipt, a rejected input, or one segment of a
 * citizen's message; segments → one `Inbound`.
 */

// ---------------------------------------------------------------------------
// PDU fields

const byteString = z.custom<Buffer>((v) => Buffer.isBuffer(v), 'expected raw bytes');

/** The deliver_sm / data_sm fields the channel uses, as node-smpp decodes them. */
export const MoPdu = z.object({
  command: z.enum(['deliver_sm', 'data_sm']),
  source_addr: z.string(),
  source_addr_ton: z.number().int().default(0),
  source_addr_npi: z.number().int().default(0),
  destination_addr: z.string(),
  esm_class: z.number().int().min(0).max(0xff).default(0),
  data_coding: z.number().int().min(0).max(0xff).nullable().default(0),
  short_message: byteString.optional(),
  message_payload: byteString.optional(),
  sar_msg_ref_num: z.number().int().optional(),
  // One-octet TLVs (SMPP 3.4 §5.3.2.23–24).
  sar_total_segments: z.number().int().min(0).max(255).optional(),
  sar_segment_seqnum: z.number().int().min(0).max(255).optional(),
  receipted_message_id: z.string().optional(),
  message_state: z.number().int().optional(),
});
export type MoPdu = z.infer<typeof MoPdu>;

/** esm_class message-type bits 2–5 (SMPP 3.4 §5.2.12): receipts, acknowledgements, notifications. */
export const ESM_MESSAGE_TYPE_MASK = 0x3c;
export const ESM_DELIVERY_RECEIPT = 0x04;
export const ESM_UDHI = 0x40;

// ---------------------------------------------------------------------------
// User data header (3GPP TS 23.040 §9.2.3.24)

export interface InformationElement {
  iei: number;
  data: Buffer;
}

export interface Concat {
  /** How the segment named its message: UDH with an 8- or 16-bit reference, or SAR TLVs. */
  method: 'udh8' | 'udh16' | 'sar';
  ref: number;
  total: number;
  /** 1-based. */
  seq: number;
}

export type UdhSplit = { ok: true; ies: InformationElement[]; body: Buffer } | { ok: false; detail: string };

/** Split `UDHL | IE… | body`, walking every information element rather than matching fixed bytes. */
export function splitUdh(bytes: Buffer): UdhSplit {
  if (bytes.length === 0) return { ok: false, detail: 'UDHI set but the message is empty' };
  const udhl = bytes[0]!;
  if (udhl + 1 > bytes.length) return { ok: false, detail: `UDH length ${udhl} exceeds the message (${bytes.length} octets)` };
  const ies: InformationElement[] = [];
  let at = 1;
  const end = 1 + udhl;
  while (at < end) {
    if (at + 2 > end) return { ok: false, detail: `truncated information element at octet ${at}` };
    const iei = bytes[at]!;
    const len = bytes[at + 1]!;
    if (at + 2 + len > end) return { ok: false, detail: `information element 0x${iei.toString(16)} overruns the UDH` };
    ies.push({ iei, data: bytes.subarray(at + 2, at + 2 + len) });
    at += 2 + len;
  }
  return { ok: true, ies, body: bytes.subarray(end) };
}

/** The concatenation IE (0x00 or 0x08), if a valid one is present. Invalid ones are ignored, as 23.040 says. */
export function concatFromIes(ies: InformationElement[]): Concat | null {
  let found: Concat | null = null;
  for (const { iei, data } of ies) {
    let c: Concat | null = null;
    if (iei === 0x00 && data.length === 3) c = { method: 'udh8', ref: data[0]!, total: data[1]!, seq: data[2]! };
    else if (iei === 0x08 && data.length === 4) c = { method: 'udh16', ref: data.readUInt16BE(0), total: data[2]!, seq: data[3]! };
    if (c && c.total >= 1 && c.seq >= 1 && c.seq <= c.total) found = c;
  }
  return found;
}

// ---------------------------------------------------------------------------
// Addresses

/** Digits only (drops `+`, spaces and dashes some SMSCs leave in addresses). */
export function digitsOf(addr: string): string {
  return addr.replace(/\D/g, '');
}

/**
 * The hotline accepts its service number and any extension appended to it
 * (106353112345xx routes to a department). SMSCs may prefix the country code.
 * Returns the extension ('' for none), or null when the number is not ours.
 */
export function extensionOf(destination: string, serviceNumber: string): string | null {
  const d = digitsOf(destination);
  for (const candidate of [d, d.replace(/^0086/, ''), d.replace(/^86/, '')]) {
    if (candidate.startsWith(serviceNumber)) return candidate.slice(serviceNumber.length);
  }
  return null;
}

/** Citizen identity from source_addr: E.164 phone for Chinese mobile numbers. */
export function citizenFromAddress(sourceAddr: string): Inbound['citizen'] {
  const digits = digitsOf(sourceAddr);
  let phone: string | null = null;
  // Mainland mobile numbers are 11 digits, 1[3-9]…; with the country code 86 or 0086 in front.
  const national = /^(?:0086|86)?(1[3-9]\d{9})$/.exec(digits);
  if (national) phone = `+86${national[1]}`;
  return { channelUserId: digits, phone, email: null, name: null };
}

// ---------------------------------------------------------------------------
// Delivery receipts

export interface Receipt {
  id: string;
  stat: string;
  err: string | null;
}

/** SMPP message_state values (§5.2.28) as the receipt-text `stat` words. */
const MESSAGE_STATES: Record<number, string> = {
  1: 'ENROUTE',
  2: 'DELIVRD',
  3: 'EXPIRED',
  4: 'DELETED',
  5: 'UNDELIV',
  6: 'ACCEPTD',
  7: 'UNKNOWN',
  8: 'REJECTD',
};

/**
 * A receipt names our submit_sm by `receipted_message_id`/`message_state` TLVs
 * (SMPP 3.4) or, de facto (Appendix B), in the text:
 * `id:IIII sub:001 dlvrd:001 submit date:… done date:… stat:DELIVRD err:000 text:…`.
 */
export function parseReceipt(pdu: Pick<MoPdu, 'receipted_message_id' | 'message_state'>, text: string): Receipt | null {
  const id = pdu.receipted_message_id?.trim() || /(?:^|\s)id:(\S+)/i.exec(text)?.[1] || null;
  const stateWord = pdu.message_state !== undefined ? MESSAGE_STATES[pdu.message_state] : undefined;
  const stat = stateWord ?? /(?:^|\s)stat:(\S+)/i.exec(text)?.[1]?.toUpperCase() ?? null;
  if (!id || !stat) return null;
  const err = /(?:^|\s)err:(\S+)/i.exec(text)?.[1] ?? null;
  return { id, stat, err };
}

/**
 * SMSCs disagree on the form of message ids: some answer submit_sm with a hex id and
 * quote it in decimal in the receipt (or the reverse). Other spellings to try when
 * the id as given matches nothing.
 */
export function receiptIdVariants(id: string): string[] {
  const out: string[] = [];
  try {
    if (/^\d{1,30}$/.test(id)) {
      const h = BigInt(id).toString(16);
      out.push(h, h.toUpperCase());
    } else if (/^[0-9a-f]{1,24}$/i.test(id)) {
      out.push(BigInt(`0x${id}`).toString(10));
    }
  } catch {
    // not a number in either base: only the id as given
  }
  return out.filter((v) => v !== id);
}

// ---------------------------------------------------------------------------
// Classification of one MO PDU

/** One segment of a citizen's message (a single-part message is a segment with total 1). */
export interface PartMeta {
  v: 1;
  source: string;
  destination: string;
  extension: string;
  ton: number;
  npi: number;
  dataCoding: number;
  method: Concat['method'] | 'none';
  ref: number;
  total: number;
  seq: number;
  /** sha256 of the message bytes as received (UDH included): identity for dedupe. */
  hash: string;
  /** Where the bytes were: short_message or the message_payload TLV. */
  field: 'short_message' | 'message_payload';
  /** The message bytes as received, hex, kept for the journal's raw record. */
  rawHex: string;
}

export interface Segment {
  meta: PartMeta;
  /** Text bytes without the UDH. */
  body: Buffer;
  /** When the store first held it (parts read back from the channel state). */
  receivedAt?: Date;
}

export type Classified =
  | { kind: 'receipt'; receipt: Receipt | null; text: string; raw: string }
  | { kind: 'reject'; reason: string; detail: string; raw: string }
  | { kind: 'segment'; segment: Segment };

function sha256(...parts: (string | Buffer)[]): string {
  const h = createHash('sha256');
  for (const p of parts) {
    h.update(p);
    h.update('\u001f');
  }
  return h.digest('hex');
}

/** A JSON rendering of the PDU for the journal and `intake.rejected` (bytes as hex). */
export function rawPdu(pdu: Record<string, unknown>): string {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(pdu)) {
    if (typeof v === 'function' || k === 'command_length') continue;
    out[k] = Buffer.isBuffer(v) ? { hex: v.toString('hex') } : v;
  }
  return JSON.stringify(out);
}

export interface ClassifyOptions {
  serviceNumber: string;
}

/** Decide what one MO PDU is. Pure: no I/O, no clock. */
export function classify(input: Record<string, unknown>, opts: ClassifyOptions): Classified {
  const raw = rawPdu(input);
  const parsed = MoPdu.safeParse(input);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    // The command name is only for the operator; a field of any type must not throw here.
    const command = typeof input.command === 'string' ? input.command : 'PDU';
    return { kind: 'reject', reason: 'parse_error', detail: `malformed ${command}: ${issues}`, raw };
  }
  const pdu = parsed.data;
  const dataCoding = pdu.data_coding ?? 0;
  // message_payload replaces short_message when present (SMPP 3.4 §5.3.2.32: sm_length is then 0).
  const usePayload = pdu.message_payload !== undefined && pdu.message_payload.length > 0;
  const bytes = (usePayload ? pdu.message_payload : pdu.short_message) ?? Buffer.alloc(0);
  const field = usePayload ? 'message_payload' : 'short_message';

  if (pdu.esm_class & ESM_MESSAGE_TYPE_MASK) {
    // Receipts and acknowledgements answer our own submit_sm: never a citizen's message.
    const text = bytes.toString('latin1');
    const receipt = parseReceipt(pdu, text);
    return { kind: 'receipt', receipt, text, raw };
  }

  const extension = extensionOf(pdu.destination_addr, opts.serviceNumber);
  if (extension === null) {
    return { kind: 'reject', reason: 'not_service_number', detail: `destination ${pdu.destination_addr} is not ${opts.serviceNumber} or an extension of it`, raw };
  }
  if (digitsOf(pdu.source_addr) === '') {
    return { kind: 'reject', reason: 'parse_error', detail: 'source_addr has no digits', raw };
  }

  let body = bytes;
  let concat: Concat | null = null;
  if (pdu.esm_class & ESM_UDHI) {
    const split = splitUdh(bytes);
    if (!split.ok) return { kind: 'reject', reason: 'parse_error', detail: split.detail, raw };
    for (const { iei } of split.ies) {
      if (iei === 0x04 || iei === 0x05) {
        // Application port addressing: a WAP push, MMS notification or SIM data, not text for a person.
        return { kind: 'reject', reason: 'unsupported_type', detail: `application port addressing (IEI 0x0${iei})`, raw };
      }
      if ((iei === 0x24 || iei === 0x25) && isGsm(dataCoding)) {
        return { kind: 'reject', reason: 'unsupported_coding', detail: `GSM national language shift table (IEI 0x${iei.toString(16)})`, raw };
      }
    }
    body = split.body;
    concat = concatFromIes(split.ies);
  }
  if (!concat && pdu.sar_msg_ref_num !== undefined && pdu.sar_total_segments !== undefined && pdu.sar_segment_seqnum !== undefined) {
    const c: Concat = { method: 'sar', ref: pdu.sar_msg_ref_num, total: pdu.sar_total_segments, seq: pdu.sar_segment_seqnum };
    if (c.total >= 1 && c.seq >= 1 && c.seq <= c.total) concat = c;
  }
  if (concat && concat.total === 1) concat = null;

  const source = digitsOf(pdu.source_addr);
  const destination = digitsOf(pdu.destination_addr);
  const meta: PartMeta = {
    v: 1,
    source,
    destination,
    extension,
    ton: pdu.source_addr_ton,
    npi: pdu.source_addr_npi,
    dataCoding,
    method: concat?.method ?? 'none',
    ref: concat?.ref ?? 0,
    total: concat?.total ?? 1,
    seq: concat?.seq ?? 1,
    hash: sha256(source, destination, String(dataCoding), bytes),
    field,
    rawHex: bytes.toString('hex'),
  };
  return { kind: 'segment', segment: { meta, body } };
}

function isGsm(dataCoding: number): boolean {
  const info = codingInfo(dataCoding);
  return info.ok && info.charset === 'gsm7';
}

// ---------------------------------------------------------------------------
// Reassembly

/**
 * Parts of one message share sender, destination, reference, count and method;
 * this names the group they are kept under in the channel state.
 */
export function groupOf(meta: PartMeta): string {
  return `sms1:${sha256(meta.source, meta.destination, meta.method, String(meta.ref), String(meta.total)).slice(0, 40)}`;
}

export function encodePartMeta(meta: PartMeta): string {
  return JSON.stringify(meta);
}

const PartMetaSchema = z.object({
  v: z.literal(1),
  source: z.string(),
  destination: z.string(),
  extension: z.string(),
  ton: z.number().int(),
  npi: z.number().int(),
  dataCoding: z.number().int(),
  method: z.enum(['udh8', 'udh16', 'sar', 'none']),
  ref: z.number().int(),
  total: z.number().int().min(1),
  seq: z.number().int().min(1),
  hash: z.string(),
  field: z.enum(['short_message', 'message_payload']),
  rawHex: z.string(),
});

export function decodePartMeta(text: string): PartMeta | null {
  try {
    const r = PartMetaSchema.safeParse(JSON.parse(text));
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}

export interface AssembleOptions {
  serviceNumber: string;
  dedupeWindowMs: number;
  /** The parts group to delete with the ticket (absent for a single-part message). */
  group?: string;
}

export type Assembled =
  | { kind: 'inbound'; inbound: Inbound; complete: boolean }
  | { kind: 'reject'; reason: string; detail: string; raw: string };

/** Shown where segments are missing from an incomplete message. */
export const GAP_MARK = '…';

/**
 * Join segments (any order, duplicates allowed) into one Inbound. With parts
 * missing the message is `incomplete` and each gap is marked, so a reader sees
 * where text is lost. Bytes of adjacent parts are joined before decoding because
 * a UTF-16 surrogate pair or a GBK character may be split between them.
 */
export function assemble(parts: Segment[], opts: AssembleOptions): Assembled {
  const bySeq = new Map<number, Segment>();
  for (const p of parts) if (!bySeq.has(p.meta.seq)) bySeq.set(p.meta.seq, p);
  const ordered = [...bySeq.values()].sort((a, b) => a.meta.seq - b.meta.seq);
  const first = ordered[0];
  if (!first) throw new Error('assemble: no parts');
  const total = first.meta.total;
  const raw = JSON.stringify({
    source_addr: first.meta.source,
    destination_addr: first.meta.destination,
    method: first.meta.method,
    ref: first.meta.ref,
    total,
    parts: ordered.map((p) => ({ seq: p.meta.seq, data_coding: p.meta.dataCoding, field: p.meta.field, hex: p.meta.rawHex })),
  });

  // SMPP carries GSM 7-bit one septet per octet, so an octet above 0x7F means the
  // text is not in that form. It may be packed septets (the air-interface form some
  // SMSCs forward as they got it) or bytes of another charset; readPackedGsm7 takes
  // it only when the bits are unambiguously packed text, and otherwise the message
  // is refused as `undecodable` with its octets rather than turned into a ticket of
  // garbage. Parts of one message are packed alike, so one such octet in any GSM
  // part decides for all of them.
  const packed = ordered.some((p) => isGsm(p.meta.dataCoding) && p.body.some((octet) => octet > 0x7f));

  // Runs of consecutive parts with the same coding are decoded as one byte string.
  const texts: string[] = [];
  let expected = 1;
  let run: Segment[] = [];
  const flush = (): Assembled | null => {
    if (run.length === 0) return null;
    const dc = run[0]!.meta.dataCoding;
    const info = codingInfo(dc);
    if (!info.ok) return { kind: 'reject', reason: 'unsupported_coding', detail: info.detail, raw };
    if (info.charset === 'gsm7' && packed) {
      // Packed septets are unpacked segment by segment: each part was packed on its
      // own, after its own UDH (what precedes the body in the octets received).
      const read = readPackedGsm7(run.map((p) => ({ octets: p.body, udhOctets: p.meta.rawHex.length / 2 - p.body.length })));
      if (!read.ok) {
        return { kind: 'reject', reason: 'undecodable', detail: `data_coding 0x${dc.toString(16).padStart(2, '0')}: octets above 0x7F are not GSM 7-bit septets, nor packed septets (${read.detail})`, raw };
      }
      texts.push(read.text);
    } else {
      texts.push(decodeBytes(info.charset, Buffer.concat(run.map((p) => p.body))));
    }
    run = [];
    return null;
  };
  for (const p of ordered) {
    const gap = p.meta.seq !== expected;
    if (gap || (run.length > 0 && run[0]!.meta.dataCoding !== p.meta.dataCoding)) {
      const r = flush();
      if (r) return r;
      if (gap) texts.push(GAP_MARK);
    }
    run.push(p);
    expected = p.meta.seq + 1;
  }
  const r = flush();
  if (r) return r;
  const complete = ordered.length === total;
  if (!complete && expected <= total) texts.push(GAP_MARK);

  const m = first.meta;
  const dedupeKey = sha256('sms-mo', m.source, m.destination, m.method, String(m.ref), String(total), ...ordered.map((p) => `${p.meta.seq}:${p.meta.hash}`));
  const received = ordered.map((p) => p.meta.seq);
  const missing: number[] = [];
  for (let i = 1; i <= total; i++) if (!bySeq.has(i)) missing.push(i);

  const inbound: Inbound = {
    channel: 'sms',
    dedupeKey,
    dedupeWindowMs: opts.dedupeWindowMs,
    // SMPP gives an MO message no id; each segment is named by the hash of its bytes.
    channelMessageIds: ordered.map((p) => `sms:${p.meta.hash.slice(0, 32)}`),
    sentAt: null,
    citizen: citizenFromAddress(m.source),
    subject: null,
    content: texts.join(''),
    attachments: [],
    location: null,
    incomplete: !complete,
    source: {
      serviceNumber: opts.serviceNumber,
      extension: m.extension === '' ? null : m.extension,
      destination: m.destination,
      dataCoding: m.dataCoding,
      segments: total,
      receivedSegments: received.length,
      missingSegments: missing,
      concatenation: m.method === 'none' ? null : { method: m.method, ref: m.ref },
      messagePayload: ordered.some((p) => p.meta.field === 'message_payload'),
      // Set only when the GSM text arrived packed against the SMPP convention.
      ...(packed ? { gsm7Packed: true } : {}),
      sourceTon: m.ton,
      sourceNpi: m.npi,
    },
    raw,
  };
  if (opts.group !== undefined) inbound.consumesPartsGroup = opts.group;
  return { kind: 'inbound', inbound, complete };
}

// ---------------------------------------------------------------------------
// Duplicate segments after their message was completed

/** Per sender and destination: recently completed groups and the hashes of their parts. */
export interface DoneEntry {
  group: string;
  at: number;
  hashes: Record<string, string>;
}

export const DONE_PER_SENDER = 16;

export function doneKeyOf(meta: PartMeta): string {
  return `done:${sha256(meta.source, meta.destination).slice(0, 40)}`;
}

export function parseDone(text: string | null): DoneEntry[] {
  if (!text) return [];
  try {
    const v = JSON.parse(text) as unknown;
    if (!Array.isArray(v)) return [];
    return v.filter(
      (e): e is DoneEntry =>
        !!e && typeof e === 'object' && typeof (e as DoneEntry).group === 'string' && typeof (e as DoneEntry).at === 'number' && typeof (e as DoneEntry).hashes === 'object',
    );
  } catch {
    return [];
  }
}

/** True when this exact segment belonged to a message turned into a ticket at most `windowMs` before `at`. */
export function isDoneDuplicate(entries: DoneEntry[], group: string, meta: PartMeta, at: number, windowMs: number): boolean {
  return entries.some((e) => e.group === group && at - e.at <= windowMs && e.hashes[String(meta.seq)] === meta.hash);
}

/** Add a completed group, dropping entries outside the window and keeping the list bounded. */
export function recordDone(entries: DoneEntry[], group: string, parts: Segment[], now: number, windowMs: number): DoneEntry[] {
  const hashes: Record<string, string> = {};
  for (const p of parts) hashes[String(p.meta.seq)] = p.meta.hash;
  const kept = entries.filter((e) => e.group !== group && now - e.at <= windowMs);
  return [...kept, { group, at: now, hashes }].slice(-DONE_PER_SENDER);
}
