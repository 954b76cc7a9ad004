import type { Channel } from '../ticket.js';
import { ticketCreated } from '../publish/messages.js';
import type { OutboxInsert, Store } from '../store/types.js';

/** Tickets read per page, and outbox rows journaled per unit. */
const PAGE = 500;

export interface ReplayResult {
  queued: number;
  first: number | null;
  last: number | null;
}

/**
 * Journals `ticket.created` again for every ticket received in [since, until],
 * with the ticket's own messageId (its id), so consumers that saw it drop the copy.
 * The rows go into the outbox like any other, pointing at the stored ticket, so the
 * gateway's relay publishes them with confirms; nothing here talks to the broker.
 */
export async function replay(store: Store, q: { since: number; until: number; channel?: Channel; dryRun: boolean }): Promise<ReplayResult> {
  let since = q.since;
  let limit = PAGE;
  /** Tickets already handled whose createdAt equals `since` (the next page starts at it again). */
  let atSince = new Set<string>();
  const result: ReplayResult = { queued: 0, first: null, last: null };
  for (;;) {
    const page = await store.listTickets({ since, channel: q.channel, limit });
    const fresh = page.filter((t) => t.createdAt <= q.until && !(t.createdAt === since && atSince.has(t.id)));
    if (fresh.length > 0) {
      const rows: OutboxInsert[] = fresh.map((t) => ({ ...ticketCreated(t.ticket), json: t.json, ticketRef: t.id }));
      if (!q.dryRun) await store.append({ outbox: rows });
      result.queued += rows.length;
      result.first ??= fresh[0]!.createdAt;
      result.last = fresh.at(-1)!.createdAt;
    }
    if (page.length < limit || page.at(-1)!.createdAt > q.until) return result;
    const next = page.at(-1)!.createdAt;
    if (next === since && fresh.length === 0) {
      // A whole page received in the same millisecond, all handled: read a bigger page from the same point.
      limit *= 2;
      continue;
    }
    if (next !== since) atSince = new Set();
    for (const t of page) if (t.createdAt === next) atSince.add(t.id);
    since = next;
  }
}
