import type { Channel, Ticket } from '../ticket.js';
import type { OutboundKind, OutboundRecord, OutboundState, OutboundTarget, OutboxInsert, OutboxMessage, TicketRecord } from './types.js';

/**
 * The rows both backends store, as their drivers return them (snake_case, the
 * ticket and target as JSON text), and the one mapping of each to the records
 * the rest of the gateway sees. Both schemas keep the same columns for these
 * tables, so a record reads the same whichever backend wrote it.
 */

export interface TicketRow {
  id: string;
  number: string;
  channel: string;
  citizen_key: string;
  created_at: number;
  respond_by: number;
  acknowledged_at: number | null;
  responded_at: number | null;
  /** SQLite has no boolean type: 0/1 there, true/false on PostgreSQL. */
  breached: number | boolean;
  repeat_of: string | null;
  body: string;
}

export interface OutboundRow {
  id: string;
  ticket_id: string | null;
  channel: string;
  kind: string;
  text: string;
  target: string;
  state: string;
  attempts: number;
  next_at: number;
  created_at: number;
  sent_at: number | null;
  via: string | null;
  upstream_id: string | null;
  delivery: string | null;
  error: string | null;
}

/** An outbox row joined with the body of the ticket it points at (`ticket.created` rows keep no copy). */
export interface OutboxRow {
  seq: number;
  routing_key: string;
  message_id: string;
  type: string;
  headers: string;
  body: string;
  created_at: number;
  ticket_body: string | null;
}

export function toTicketRecord(r: TicketRow): TicketRecord {
  return {
    id: r.id,
    number: r.number,
    channel: r.channel as Channel,
    citizenKey: r.citizen_key,
    createdAt: r.created_at,
    respondBy: r.respond_by,
    acknowledgedAt: r.acknowledged_at,
    respondedAt: r.responded_at,
    breached: r.breached === true || r.breached === 1,
    repeatOf: r.repeat_of,
    ticket: JSON.parse(r.body) as Ticket,
    json: r.body,
  };
}

export function toOutboundRecord(r: OutboundRow): OutboundRecord {
  return {
    id: r.id,
    ticketId: r.ticket_id,
    channel: r.channel as Channel,
    kind: r.kind as OutboundKind,
    text: r.text,
    target: JSON.parse(r.target) as OutboundTarget,
    nextAt: r.next_at,
    createdAt: r.created_at,
    state: r.state as OutboundState,
    attempts: r.attempts,
    sentAt: r.sent_at,
    via: r.via,
    upstreamId: r.upstream_id,
    delivery: r.delivery,
    error: r.error,
  };
}

/** The body an outbox row is published with: the one the caller serialized, or the body serialized now. */
export function outboxBody(m: OutboxInsert): string {
  return m.json ?? JSON.stringify(m.body);
}

/** A row just written, as the relay publishes it, without reading it back. */
export function writtenOutboxMessage(seq: number, m: OutboxInsert, body: string, createdAt: number): OutboxMessage {
  return { seq, routingKey: m.routingKey, messageId: m.messageId, type: m.type, headers: m.headers, body, createdAt };
}

export function toOutboxMessage(r: OutboxRow): OutboxMessage {
  return {
    seq: r.seq,
    routingKey: r.routing_key,
    messageId: r.message_id,
    type: r.type,
    headers: JSON.parse(r.headers) as Record<string, unknown>,
    // Tickets are never deleted, so a row pointing at one always finds it; the row's own body ('') keeps it visible if not.
    body: r.ticket_body ?? r.body,
    createdAt: r.created_at,
  };
}
