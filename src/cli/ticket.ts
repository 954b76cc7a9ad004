import type { OutboundRecord, Store, TicketRecord } from '../store/types.js';
import { iso } from './output.js';
import { ticketState } from '../lifecycle.js';

/** Outgoing rows shown per ticket: the newest ones (a ticket holds at most REPLY_MAX_PER_TICKET replies plus a few receipts). */
const OUTBOUND_SHOWN = 200;

export interface TicketView {
  summary: {
    id: string;
    number: string;
    channel: string;
    state: 'received' | 'acknowledged' | 'responded';
    category: string;
    emergency: string | null;
    respondBy: string;
    acknowledgedAt: string | null;
    respondedAt: string | null;
    breached: boolean;
    repeatOf: string | null;
  };
  ticket: unknown;
  receipts: OutboundView[];
  notices: OutboundView[];
  replies: OutboundView[];
}

export interface OutboundView {
  id: string;
  state: string;
  attempts: number;
  createdAt: string;
  nextAt: string | null;
  sentAt: string | null;
  via: string | null;
  upstreamId: string | null;
  delivery: string | null;
  error: string | null;
  text: string;
}

/** A ticket by id or by number (`YYYYMMDD-NNNNNN`). */
export async function findTicket(store: Store, ref: string): Promise<TicketRecord | null> {
  return /^\d{8}-\d{6,}$/.test(ref) ? store.getTicketByNumber(ref) : store.getTicket(ref);
}

export async function ticketView(store: Store, t: TicketRecord): Promise<TicketView> {
  const out = await store.outboundOfTicket(t.id, OUTBOUND_SHOWN);
  const view = (kind: OutboundRecord['kind']) => out.filter((o) => o.kind === kind).map(outboundView);
  return {
    summary: {
      id: t.id,
      number: t.number,
      channel: t.channel,
      // As GET /api/v1/tickets/:id/status words it.
      state: ticketState(t),
      category: t.ticket.category,
      emergency: t.ticket.emergency ? `${t.ticket.emergency.service} (${t.ticket.emergency.reason})` : null,
      respondBy: iso(t.respondBy)!,
      acknowledgedAt: iso(t.acknowledgedAt),
      respondedAt: iso(t.respondedAt),
      breached: t.breached,
      repeatOf: t.repeatOf,
    },
    ticket: t.ticket,
    receipts: view('receipt'),
    notices: view('notice'),
    replies: view('reply'),
  };
}

function outboundView(o: OutboundRecord): OutboundView {
  return {
    id: o.id,
    state: o.state,
    attempts: o.attempts,
    createdAt: iso(o.createdAt)!,
    nextAt: o.state === 'pending' ? iso(o.nextAt) : null,
    sentAt: iso(o.sentAt),
    via: o.via,
    upstreamId: o.upstreamId,
    delivery: o.delivery,
    error: o.error,
    text: o.text,
  };
}

/** The summary, one fact a line; then each outgoing row; then the ticket's JSON. */
export function formatTicket(v: TicketView): string {
  const s = v.summary;
  const lines = [
    `number         ${s.number}`,
    `id             ${s.id}`,
    `channel        ${s.channel}`,
    `state          ${s.state}${s.breached ? ', deadline breached' : ''}`,
    `category       ${s.category}`,
    `emergency      ${s.emergency ?? 'no'}`,
    `respondBy      ${s.respondBy}`,
    `acknowledgedAt ${s.acknowledgedAt ?? '-'}`,
    `respondedAt    ${s.respondedAt ?? '-'}`,
    `breached       ${s.breached}`,
  ];
  if (s.repeatOf) lines.push(`repeatOf       ${s.repeatOf}`);
  for (const [title, rows] of [
    ['receipts', v.receipts],
    ['notices', v.notices],
    ['replies', v.replies],
  ] as const) {
    lines.push('', `${title} (${rows.length})`);
    for (const o of rows) {
      const when = o.sentAt ? `sent ${o.sentAt}` : o.nextAt ? `next ${o.nextAt}` : `created ${o.createdAt}`;
      const facts = [`${o.state.padEnd(7)} attempts ${o.attempts}`, when, o.via ? `via ${o.via}` : null, o.delivery ? `delivery ${o.delivery}` : null, o.error ? `error ${o.error}` : null];
      lines.push(`  ${o.id}`, `    ${facts.filter(Boolean).join('; ')}`, `    ${JSON.stringify(o.text.length > 120 ? `${o.text.slice(0, 119)}…` : o.text)}`);
    }
  }
  lines.push('', 'ticket', JSON.stringify(v.ticket, null, 2));
  return lines.join('\n');
}
