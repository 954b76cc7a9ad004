import { stableId, type Channel, type Ticket } from '../ticket.js';
import type { OutboxInsert } from '../store/types.js';
import type { DeadlineEvent, IntakeRejected, MessageHeaders, RejectedHeaders, ReplyFailed, TicketAcknowledged, TicketFollowup, TicketResponded } from './schemas.js';

/**
 * What goes on the wire, built in one place so every publisher agrees with the
 * contract (section 3): routing keys, message ids, `type`, headers.
 */

/** Each event's body, as published in /asyncapi.json (src/publish/schemas.ts). */
export interface TicketEventBodies {
  acknowledged: TicketAcknowledged;
  'deadline.warning': DeadlineEvent;
  'deadline.breached': DeadlineEvent;
  responded: TicketResponded;
  followup: TicketFollowup;
}
export type TicketEvent = keyof TicketEventBodies;

type TicketFacts = Pick<Ticket, 'id' | 'channel' | 'category' | 'language' | 'emergency'>;

function headers(t: TicketFacts): MessageHeaders {
  return {
    channel: t.channel,
    category: t.category,
    language: t.language,
    emergency: t.emergency !== null,
    schemaVersion: 1,
  };
}

export function ticketCreated(ticket: Ticket): OutboxInsert {
  return {
    routingKey: `ticket.created.${ticket.channel}.${ticket.category}`,
    messageId: ticket.id,
    type: 'ticket.created',
    headers: headers(ticket),
    body: ticket,
  };
}

/**
 * `idParts` make the event id stable: a republished event keeps its id so
 * consumers can dedupe it like tickets.
 */
export function ticketEvent<E extends TicketEvent>(event: E, ticket: TicketFacts, body: TicketEventBodies[E], ...idParts: string[]): OutboxInsert {
  const [first, second] = event.split('.') as [string, string | undefined];
  const type = `ticket.${first}`;
  return {
    routingKey: second ? `ticket.${first}.${second}.${ticket.channel}` : `ticket.${first}.${ticket.channel}`,
    messageId: stableId('event', event, ticket.id, ...idParts),
    type,
    headers: headers(ticket),
    body,
  };
}

export function intakeRejected(channel: Channel, body: Omit<IntakeRejected, 'channel'>, id: string): OutboxInsert {
  const h: RejectedHeaders = { channel, category: 'unknown', language: 'und', emergency: false, schemaVersion: 1, reason: body.reason };
  const b: IntakeRejected = { channel, ...body };
  return {
    routingKey: `intake.rejected.${channel}`,
    messageId: id,
    type: 'intake.rejected',
    headers: h,
    body: b,
  };
}

/**
 * `channel` 'unknown' when the reply names no ticket the gateway knows (or could not be
 * read at all). The id includes the ticket: a replyId is unique within its ticket only.
 */
export function replyFailed(ticket: TicketFacts | null, channel: Channel | 'unknown', body: ReplyFailed): OutboxInsert {
  const none = { channel, category: 'unknown', language: 'und', emergency: false, schemaVersion: 1 };
  return {
    routingKey: `reply.failed.${channel}`,
    messageId: body.ticketId ? stableId('reply-failed', body.ticketId, body.replyId) : stableId('reply-failed', body.replyId),
    type: 'reply.failed',
    headers: ticket ? headers(ticket) : none,
    body,
  };
}

/** Raw upstream input as it travels in `intake.rejected`: text when it is valid UTF-8, else base64. */
export function encodeRaw(raw: string | Buffer): { raw: string; rawEncoding: 'utf8' | 'base64' } {
  if (typeof raw === 'string') return { raw, rawEncoding: 'utf8' };
  const text = raw.toString('utf8');
  if (!text.includes('\ufffd') && Buffer.byteLength(text) === raw.length) return { raw: text, rawEncoding: 'utf8' };
  return { raw: raw.toString('base64'), rawEncoding: 'base64' };
}
