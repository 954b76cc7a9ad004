import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { DueDeadline, FiredDeadline, Store, TicketRecord } from '../store/types.js';
import type { Metrics } from '../metrics.js';
import { errorMessage } from '../errors.js';

const BATCH = 500;
// setTimeout cannot wait longer than 2^31-1 ms; re-arm at most hourly.
const MAX_SLEEP = 3_600_000;
/**
 * Least time between the starts of two looks for due events. Tickets arrive spread
 * out, so under a steady 400 tickets/s a warning or a breach falls due every
 * 1.25 ms on average: armed for each one, the scheduler ran a unit (a transaction,
 * and a look for the next due time) per event, which cost more than the event. A
 * look at most every 100 ms fires the ~80 events due meanwhile in one unit, and
 * keeps each within 100 ms plus the unit's own time of due (the contract allows 1 s).
 */
const GATHER_MS = 100;

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
  /** When the last look for due events started (monotonic ms). */
  private lastLook = -Infinity;

  constructor(
    private readonly store: Store,
    /** What firing a due event writes (the ticket lifecycle decides; this class only keeps time). */
    private readonly decide: (due: DueDeadline, t: TicketRecord, now: number) => FiredDeadline | null,
    private readonly clock: Clock,
    private readonly logger: Logger,
    private readonly metrics: Metrics,
    /**
     * Longest sleep between looks at the store. With several instances another one
     * may add an earlier deadline (or die holding some): a short poll keeps every
     * event within a second of its time. Alone, the timer is always armed for the
     * earliest one, and it only needs waking hourly.
     */
    private readonly maxSleepMs = MAX_SLEEP,
    /** See GATHER_MS. */
    private readonly gatherMs = GATHER_MS,
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
    const untilDue = Math.max(0, Math.min(dueAt - this.clock.now(), this.maxSleepMs));
    // Real time, like the timer: the gap paces the looks, whatever the (injected) clock says.
    const delay = Math.max(untilDue, this.lastLook + this.gatherMs - performance.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      this.armedFor = null;
      void this.fire();
    }, delay);
  }

  private async fire(): Promise<void> {
    if (this.running || this.stopped) return;
    this.running = true;
    this.lastLook = performance.now();
    try {
      for (;;) {
        const now = this.clock.now();
        // Claimed and written in one unit: each event fires once, also with several instances.
        const fired = await this.store.fireDue(now, BATCH, (due, t) => this.decide(due, t, now));
        // Metrics after the commit: a unit may run twice when a neighbour in its batch fails.
        for (const { due, fired: f } of fired) {
          this.metrics.deadlineEvents.inc({ kind: f.kind === 'warning' ? 'warning' : 'breached' });
          // A warning that fired as the breach was due at respond_by.
          this.metrics.deadlineLag.observe(Math.max(0, now - (f.kind === due.kind ? due.dueAt : due.respondBy)) / 1000);
        }
        if (fired.length > 0) this.logger.info({ fired: fired.length }, 'deadline events fired');
        if (fired.length < BATCH) break;
      }
    } catch (err) {
      this.logger.error({ err: errorMessage(err) }, 'deadline scheduler failed; retrying in 1 s');
      this.running = false;
      this.arm(this.clock.now() + 1000);
      return;
    }
    this.running = false;
    if (this.stopped) return;
    const next = await this.store.nextDeadline().catch(() => null);
    this.arm(next ?? this.clock.now() + this.maxSleepMs);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
