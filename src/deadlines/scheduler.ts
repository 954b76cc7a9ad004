import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { SqliteStore } from '../store/sqlite.js';
import type { Metrics } from '../metrics.js';
import type { Ticket } from '../ticket.js';
import { ticketEvent } from '../publish/messages.js';
import { errorMessage } from '../errors.js';

const BATCH = 500;
// setTimeout cannot wait longer than 2^31-1 ms; re-arm at most hourly.
const MAX_SLEEP = 3_600_000;

/**
 * Each open ticket carries its next deadline event (the warning, then the breach
 * at respond_by) in an index ordered by due time. One timer sleeps until the
 * earliest; when it fires, every due ticket's event goes to the outbox and the
 * ticket's due time moves on in the same transaction, so each event fires once,
 * also across restarts: what fell due while the gateway was down fires at start.
 * A warning whose breach is already due too is skipped (the breach says more). A
 * reply clears the due time, which cancels whatever has not fired.
 */
export class DeadlineScheduler {
  private timer: NodeJS.Timeout | null = null;
  private armedFor: number | null = null;
  private running = false;
  private stopped = false;

  constructor(
    private readonly store: SqliteStore,
    private readonly clock: Clock,
    private readonly logger: Logger,
    private readonly metrics: Metrics,
  ) {}

  start(): void {
    void this.fire();
  }

  /** A deadline row with this due time was committed. */
  noteDue(dueAt: number): void {
    if (this.stopped) return;
    if (this.armedFor === null || dueAt < this.armedFor) this.arm(dueAt);
  }

  private arm(dueAt: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.armedFor = dueAt;
    const delay = Math.max(0, Math.min(dueAt - this.clock.now(), MAX_SLEEP));
    this.timer = setTimeout(() => {
      this.timer = null;
      this.armedFor = null;
      void this.fire();
    }, delay);
  }

  private async fire(): Promise<void> {
    if (this.running || this.stopped) return;
    this.running = true;
    try {
      for (;;) {
        const now = this.clock.now();
        const due = this.store.dueDeadlines(now, BATCH);
        if (due.length === 0) break;
        const fired = await this.store.run(() => {
          const firedRows: { kind: 'warning' | 'breach'; due_at: number }[] = [];
          for (const d of due) {
            // A warning whose breach is due too is skipped: the breach says more.
            const kind = d.kind === 'warning' && d.respond_by <= now ? 'breach' : d.kind;
            const next = kind === 'warning' ? { kind: 'breach' as const, at: d.respond_by } : null;
            if (!this.store.advanceDue(d.ticket_id, { kind: d.kind, at: d.due_at }, next)) continue; // cancelled by a reply meanwhile
            const row = this.store.getTicketRow(d.ticket_id);
            if (!row) continue;
            const t = JSON.parse(row.body) as Ticket;
            const event = kind === 'warning' ? 'deadline.warning' : 'deadline.breached';
            this.store.addOutbox(ticketEvent(event, t, { ticketId: t.id, number: t.number, respondBy: t.deadline.respondBy, at: new Date(now).toISOString() }), now);
            if (kind === 'breach') this.store.setBreached(t.id);
            firedRows.push({ kind, due_at: kind === d.kind ? d.due_at : d.respond_by });
          }
          return firedRows;
        });
        // Metrics after the commit: a unit may run twice when a neighbour in its batch fails.
        for (const d of fired) {
          this.metrics.deadlineEvents.inc({ kind: d.kind === 'warning' ? 'warning' : 'breached' });
          this.metrics.deadlineLag.observe(Math.max(0, now - d.due_at) / 1000);
        }
        if (fired.length > 0) this.logger.info({ fired: fired.length }, 'deadline events fired');
        if (due.length < BATCH) break;
      }
    } catch (err) {
      this.logger.error({ err: errorMessage(err) }, 'deadline scheduler failed; retrying in 1 s');
      this.running = false;
      this.arm(this.clock.now() + 1000);
      return;
    }
    this.running = false;
    if (this.stopped) return;
    const next = this.store.nextDeadline();
    if (next !== null) this.arm(next);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
