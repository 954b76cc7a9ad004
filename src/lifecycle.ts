import type { Channel, Ticket } from './ticket.js';
import { THREADED_CHANNELS } from './channels/types.js';
import { ticketEvent } from './publish/messages.js';
import type { DueDeadline, FiredDeadline, OutboundKind, OutboundRecord, OutboundResult, TicketChange, TicketRecord } from './store/types.js';

/**
 * The ticket lifecycle in one place: what each step (acknowledged, responded,
 * deadline warning and breach) changes on the ticket and which event it
 * journals with that change. Every function here is pure; the store applies the
 * change in the same unit that read the ticket, so a step happens once however
 * many senders, schedulers or instances race for it.
 */

const iso = (ms: number) => new Date(ms).toISOString();

/** Outgoing message ids: unique, and the same for a retried request, so nothing is sent twice. */
export const outboundId = {
  receipt: (ticketId: string) => `receipt:${ticketId}`,
  /** A replyId is unique within its ticket, not across tickets. */
  reply: (ticketId: string, replyId: string) => `reply:${ticketId}:${replyId}`,
  notice: (key: string) => `notice:${key}`,
};

/** The downstream replyId of a reply row (also of rows written before replyIds were per ticket). */
export function replyIdOf(row: { id: string; ticketId: string | null }): string {
  const scoped = `reply:${row.ticketId}:`;
  if (row.id.startsWith(scoped)) return row.id.slice(scoped.length);
  return row.id.startsWith('reply:') ? row.id.slice('reply:'.length) : row.id;
}

/** Where a ticket stands, as its status (HTTP, status queries, the command line) words it. */
export function ticketState(t: Pick<TicketRecord, 'acknowledgedAt' | 'respondedAt'>): 'received' | 'acknowledged' | 'responded' {
  return t.respondedAt ? 'responded' : t.acknowledgedAt ? 'acknowledged' : 'received';
}

/** The citizen was told the ticket number (receipt sent, or answered in-band). */
export function acknowledged(via: string) {
  return (t: TicketRecord, now: number): TicketChange | null => {
    if (t.acknowledgedAt !== null) return null;
    return {
      acknowledgedAt: now,
      outbox: [ticketEvent('acknowledged', t.ticket, { ticketId: t.id, number: t.number, at: iso(now), via })],
    };
  };
}

/**
 * A reply went out. The first one meets the deadline and cancels the warning and
 * breach that have not fired; every one is a `ticket.responded`.
 */
export function responded(replyId: string) {
  return (t: TicketRecord, now: number): TicketChange => {
    const first = t.respondedAt === null;
    return {
      ...(first ? { respondedAt: now, clearDue: true as const } : {}),
      outbox: [
        ticketEvent(
          'responded',
          t.ticket,
          { ticketId: t.id, number: t.number, replyId, at: iso(now), withinDeadline: now <= t.respondBy, latencyMs: now - t.createdAt },
          replyId,
        ),
      ],
    };
  };
}

/** What an outgoing message that the channel accepted means for its ticket. */
export function delivered(row: Pick<OutboundRecord, 'id' | 'ticketId' | 'kind' | 'channel'>, result: OutboundResult) {
  return (t: TicketRecord, now: number): TicketChange | null => {
    // Only a threaded channel (mail) can cite what we sent: our Message-ID then names the ticket.
    const refs = result.upstreamId && THREADED_CHANNELS.has(row.channel) ? [{ ref: result.upstreamId, ticketId: t.id }] : [];
    let change: TicketChange | null = null;
    if (row.kind === 'receipt') change = acknowledged(result.via)(t, now);
    else if (row.kind === 'reply') change = responded(replyIdOf(row))(t, now);
    if (refs.length === 0) return change;
    return { ...change, refs: [...(change?.refs ?? []), ...refs] };
  };
}

/**
 * A due deadline event: the warning (then the breach waits for respond_by) or the
 * breach. A warning whose breach is due as well fires as the breach alone: it says
 * more, and a citizen's ticket should not produce two alarms at once.
 */
export function deadlineFired(due: DueDeadline, t: TicketRecord, now: number): FiredDeadline {
  const kind = due.kind === 'warning' && due.respondBy <= now ? 'breach' : due.kind;
  const event = kind === 'warning' ? 'deadline.warning' : 'deadline.breached';
  return {
    kind,
    next: kind === 'warning' ? { kind: 'breach', at: due.respondBy } : null,
    ...(kind === 'breach' ? { breached: true as const } : {}),
    outbox: [ticketEvent(event, t.ticket, { ticketId: t.id, number: t.number, respondBy: t.ticket.deadline.respondBy, at: iso(now) })],
  };
}

/** The citizen wrote again on an open ticket. */
export function followupEvent(t: Ticket, body: { content: string; attachments: Ticket['attachments']; at: string }, eventKey: string) {
  return ticketEvent('followup', t, { ticketId: t.id, ...body }, eventKey);
}

export type { OutboundKind, Channel };
