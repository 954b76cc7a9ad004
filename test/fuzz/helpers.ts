import { expect } from 'chai';
import { z } from 'zod';
import { GatewayError } from '../../src/errors.js';
import { CHANNELS, Location, TicketV1 } from '../../src/ticket.js';
import type { Inbound } from '../../src/channels/types.js';
import { cleanInbound } from '../../src/normalize/inbound.js';

/**
 * Shared checks for the fuzz specs: a parser either returns something valid or
 * refuses with a typed error, within a time budget.
 */

/** One parser call may use at most this much CPU time. */
export const CALL_BUDGET_MS = 1000;
/** An async call that has not settled after this long is taken for a hang. */
export const HANG_MS = 10_000;

function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/**
 * Run a synchronous parser call and fail when it takes more than the budget.
 * CPU time, not wall time: a loaded test machine must not make this flaky, a
 * catastrophic regex or quadratic loop still shows.
 */
export function timed<T>(what: string, fn: () => T): T {
  const t0 = cpuMs();
  try {
    return fn();
  } finally {
    const spent = cpuMs() - t0;
    if (spent > CALL_BUDGET_MS) throw new Error(`${what} took ${spent.toFixed(0)} ms of CPU (budget ${CALL_BUDGET_MS} ms)`);
  }
}

/** The async counterpart: CPU budget as above, plus a wall-clock limit that catches a promise that never settles. */
export async function timedAsync<T>(what: string, fn: () => Promise<T>): Promise<T> {
  const t0 = cpuMs();
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${HANG_MS} ms (hang)`)), HANG_MS);
  });
  try {
    return await Promise.race([fn(), hang]);
  } finally {
    clearTimeout(timer);
    const spent = cpuMs() - t0;
    if (spent > CALL_BUDGET_MS) throw new Error(`${what} took ${spent.toFixed(0)} ms of CPU (budget ${CALL_BUDGET_MS} ms)`);
  }
}

/**
 * Calls `fn`; a GatewayError with one of `codes` is an accepted refusal (returned
 * as `{ error }`), anything else thrown fails the property.
 */
export function refusal<T>(what: string, fn: () => T, codes: readonly string[] = ['INPUT_INVALID']): { ok: true; value: T } | { ok: false; error: GatewayError } {
  let value: T;
  try {
    value = timed(what, fn);
  } catch (err) {
    if (err instanceof GatewayError && codes.includes(err.code)) {
      expect(err.transient, `${what}: a refusal of bad input is permanent`).to.equal(false);
      return { ok: false, error: err };
    }
    throw new Error(`${what} threw something other than a typed refusal: ${describeError(err)}`, { cause: err });
  }
  return { ok: true, value };
}

export function describeError(err: unknown): string {
  if (err instanceof GatewayError) return `GatewayError ${err.code}: ${err.message}`;
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  return String(err);
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** String.prototype.isWellFormed (ES2024, not in this project's lib). */
export function isWellFormed(s: string): boolean {
  LONE_SURROGATE.lastIndex = 0;
  return !LONE_SURROGATE.test(s);
}

/** String.prototype.toWellFormed: what UTF-8 encoding on the wire makes of a JS string. */
export function toWellFormed(s: string): string {
  return s.replace(LONE_SURROGATE, '\ufffd');
}

/** Well-formed UTF-16: no lone surrogate anywhere. */
export function expectWellFormed(s: string, what: string): void {
  if (!isWellFormed(s)) {
    const i = [...s].findIndex((c) => c.length === 1 && c.charCodeAt(0) >= 0xd800 && c.charCodeAt(0) <= 0xdfff);
    throw new Error(`${what} has a lone surrogate at code point ${i}: ${JSON.stringify(s.slice(0, 200))}`);
  }
}

export function expectNoReplacement(s: string, what: string): void {
  if (s.includes('\ufffd')) throw new Error(`${what} contains U+FFFD although the input was valid text: ${JSON.stringify(s.slice(0, 200))}`);
}

const isoDate = TicketV1.shape.receivedAt;

/** The Inbound contract of src/channels/types.ts, as far as a value can show it. */
export const InboundShape = z.object({
  channel: z.enum(CHANNELS),
  dedupeKey: z.string().min(1),
  dedupeWindowMs: z.number().int().positive().optional(),
  channelMessageIds: z.array(z.string()),
  sentAt: z.date().nullable(),
  citizen: z.object({ channelUserId: z.string(), phone: z.string().nullable(), email: z.string().nullable(), name: z.string().nullable() }),
  subject: z.string().nullable(),
  content: z.string(),
  attachments: z.array(z.object({ fileName: z.string().min(1), mimeType: z.string().min(1), data: z.instanceof(Buffer) })),
  // The address is the channel's text as sent: the intake's cleanup makes it ticket text.
  location: Location.extend({ address: z.string().nullable() }).nullable(),
  incomplete: z.boolean(),
  source: z.record(z.string(), z.unknown()),
  raw: z.union([z.string(), z.instanceof(Buffer)]),
  threadRefs: z.array(z.string()).optional(),
  consumesPartsGroup: z.string().optional(),
});

/**
 * An Inbound the intake can turn into a ticket: the shape above, every text
 * well-formed, `sentAt` a date the ticket schema accepts (the intake writes it with
 * toISOString and validates the ticket: a date out of range would throw there).
 */
export function expectValidInbound(inbound: Inbound, what: string): void {
  const r = InboundShape.safeParse(inbound);
  if (!r.success) throw new Error(`${what}: not a valid Inbound: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  expectWellFormed(inbound.content, `${what} content`);
  if (inbound.subject !== null) expectWellFormed(inbound.subject, `${what} subject`);
  for (const [k, v] of Object.entries(inbound.citizen)) if (typeof v === 'string') expectWellFormed(v, `${what} citizen.${k}`);
  expectSentAt(inbound.sentAt, what);
  expectTicketText(timed('cleanInbound', () => cleanInbound(inbound)), `${what} after the intake's cleanup`);
}

/** Code points no ticket text may hold (contract section 5, "Text"), written out apart from the product's own patterns. */
function forbiddenAt(s: string, oneLine: boolean): number {
  let i = 0;
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    const lone = ch.length === 1 && c >= 0xd800 && c <= 0xdfff;
    const control = (c < 0x20 && c !== 0x09 && c !== 0x0a) || (c >= 0x7f && c <= 0x9f);
    const bidi = (c >= 0x202a && c <= 0x202e) || (c >= 0x2066 && c <= 0x2069);
    const lineBreak = oneLine && (c === 0x09 || c === 0x0a || c === 0x2028 || c === 0x2029);
    if (lone || control || bidi || lineBreak) return i;
    i++;
  }
  return -1;
}

export function expectSafeText(s: string, what: string, oneLine = false): void {
  const i = forbiddenAt(s, oneLine);
  if (i >= 0) {
    const c = [...s][i]!.codePointAt(0)!.toString(16).padStart(4, '0');
    throw new Error(`${what} holds U+${c} at code point ${i}${oneLine ? ' (must be one line)' : ''}: ${JSON.stringify(s.slice(0, 200))}`);
  }
}

function expectSafeDeep(v: unknown, what: string): void {
  if (typeof v === 'string') expectSafeText(v, what);
  else if (Array.isArray(v)) v.forEach((x, i) => expectSafeDeep(x, `${what}[${i}]`));
  else if (v !== null && typeof v === 'object' && !Buffer.isBuffer(v) && !(v instanceof Date)) {
    for (const [k, x] of Object.entries(v)) {
      expectSafeText(k, `${what} key`);
      expectSafeDeep(x, `${what}.${k}`);
    }
  }
}

/** Every text field that becomes ticket text obeys the contract: subject, name and file names on one line. */
export function expectTicketText(msg: Inbound, what: string): void {
  expectSafeText(msg.content, `${what} content`);
  if (msg.subject !== null) expectSafeText(msg.subject, `${what} subject`, true);
  const c = msg.citizen;
  expectSafeText(c.channelUserId, `${what} citizen.channelUserId`);
  if (c.phone !== null) expectSafeText(c.phone, `${what} citizen.phone`);
  if (c.email !== null) expectSafeText(c.email, `${what} citizen.email`);
  if (c.name !== null) expectSafeText(c.name, `${what} citizen.name`, true);
  msg.channelMessageIds.forEach((id, i) => expectSafeText(id, `${what} channelMessageIds[${i}]`));
  for (const a of msg.attachments) {
    expectSafeText(a.fileName, `${what} attachment fileName`, true);
    expectSafeText(a.mimeType, `${what} attachment mimeType`);
  }
  if (msg.location?.address != null) expectSafeText(msg.location.address, `${what} location.address`);
  expectSafeDeep(msg.source, `${what} source`);
}

export function expectSentAt(sentAt: Date | null, what: string): void {
  if (sentAt === null) return;
  const t = sentAt.getTime();
  if (Number.isNaN(t)) throw new Error(`${what}: sentAt is an Invalid Date (the intake's toISOString would throw)`);
  const iso = sentAt.toISOString();
  if (!isoDate.safeParse(iso).success) throw new Error(`${what}: sentAt ${iso} is not a date the ticket schema accepts`);
}

/** A random 43-character EncodingAESKey. */
export function aesKeyFrom(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64').replace(/=+$/, '');
}
