import { z } from 'zod';
import { createHash } from 'node:crypto';
import { isOneLine, isSafeText } from './normalize/text.js';

export const CHANNELS = ['sms', 'wechat', 'mailbox', 'weibo', 'app', 'telegram'] as const;
export const Channel = z.enum(CHANNELS);
export type Channel = z.infer<typeof Channel>;

export const CATEGORIES = ['consultation', 'help', 'complaint', 'report', 'suggestion', 'praise', 'unknown'] as const;
export const Category = z.enum(CATEGORIES);
export type Category = z.infer<typeof Category>;

export const EMERGENCY_SERVICES = ['110', '119', '120', '122'] as const;
export const EmergencyService = z.enum(EMERGENCY_SERVICES);
export type EmergencyService = z.infer<typeof EmergencyService>;

export const DeadlinePolicy = z.enum(['message', 'mailbox']);
export type DeadlinePolicy = z.infer<typeof DeadlinePolicy>;

const isoDate = z.string().datetime({ offset: true });

/*
 * Contract section 5, "Text". The intake cleans every field first
 * (normalize/inbound.ts); these checks make a ticket that still holds a lone
 * surrogate, a control or a bidi override fail validation instead of reaching
 * the broker. Refinements, not transforms: the JSON Schema is generated from
 * this schema, and a refinement leaves it describable.
 */
const SAFE = 'well-formed Unicode without C0/C1 controls (other than tab and line feed) or bidirectional overrides and isolates';
/** Free text: content, addresses, ids. */
const text = () => z.string().refine(isSafeText, { message: `expected ${SAFE}` });
/** One line: subject, citizen name, file name. */
const line = () => z.string().refine(isOneLine, { message: `expected one line of ${SAFE}` });

function safeDeep(value: unknown): boolean {
  if (typeof value === 'string') return isSafeText(value);
  if (Array.isArray(value)) return value.every(safeDeep);
  if (value !== null && typeof value === 'object') return Object.entries(value).every(([k, v]) => isSafeText(k) && safeDeep(v));
  return true;
}

export const Citizen = z.object({
  channelUserId: text(),
  phone: text().nullable(),
  email: text().nullable(),
  name: line().nullable(),
});
export type Citizen = z.infer<typeof Citizen>;

export const Attachment = z.object({
  fileName: line(),
  mimeType: text(),
  size: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  url: z.string(),
});
export type Attachment = z.infer<typeof Attachment>;

export const Location = z.object({
  lat: z.number().min(-90).max(90),
  lon: z.number().min(-180).max(180),
  address: text().nullable(),
});
export type Location = z.infer<typeof Location>;

export const TicketV1 = z
  .object({
    schemaVersion: z.literal(1),
    id: z.string().uuid().describe('Stable: the same upstream message always yields the same id'),
    number: z.string().regex(/^\d{8}-\d{6,}$/).describe('Human-readable, unique per deployment'),
    channel: Channel,
    channelMessageIds: z.array(text()),
    receivedAt: isoDate.describe('When the gateway first held the message durably'),
    sentAt: isoDate.nullable().describe("The channel's own timestamp, when it has one"),
    citizen: Citizen,
    subject: line().nullable(),
    content: text().describe('Plain text, NFC, HTML and quoting stripped'),
    attachments: z.array(Attachment),
    location: Location.nullable(),
    category: Category,
    language: z.string().describe('BCP 47 tag of the content'),
    emergency: z.object({ service: EmergencyService, reason: z.string() }).nullable(),
    outOfScope: z.object({ reason: z.string() }).nullable(),
    repeatOf: z.string().uuid().nullable().describe('Earlier open ticket of the same citizen on the same matter'),
    deadline: z.object({
      policy: DeadlinePolicy,
      duration: z.string().describe('ISO 8601 duration'),
      respondBy: isoDate,
    }),
    incomplete: z.boolean(),
    source: z.record(z.string(), z.unknown()).refine(safeDeep, { message: `expected every text to be ${SAFE}` }).describe('Channel-specific facts'),
  })
  .describe('12345 intake gateway ticket, schema v1');
export type Ticket = z.infer<typeof TicketV1>;

let cachedJsonSchema: unknown;
/** JSON Schema of the ticket, generated from the same zod schema the code validates with. */
export function ticketJsonSchema(): unknown {
  cachedJsonSchema ??= {
    $id: '/schema/ticket.v1.json',
    ...(z.toJSONSchema(TicketV1, { target: 'draft-2020-12' }) as object),
  };
  return cachedJsonSchema;
}

// RFC 4122 name-based (SHA-1, version 5) UUIDs. The namespace is fixed for the
// project, so the same channel + upstream identity yields the same id on every
// instance and after every restart.
const NAMESPACE = Buffer.from('6f1c2b4e9a3d4e8fb1c05a7d3e2f1a90', 'hex');

export function stableId(...parts: string[]): string {
  const h = createHash('sha1').update(NAMESPACE).update(parts.join('\u001f'), 'utf8').digest();
  h[6] = (h[6]! & 0x0f) | 0x50;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}

export function ticketIdFor(channel: Channel, dedupeKey: string): string {
  return stableId('ticket', channel, dedupeKey);
}
