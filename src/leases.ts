import type { Logger } from 'pino';
import type { Store } from './store/types.js';
import type { ChannelLease } from './channels/types.js';
import { errorMessage } from './errors.js';

/**
 * A named lease in the store, for work only one instance may do at a time (IMAP
 * reading, Telegram long polling). The holder renews it every third of its
 * time-to-live; an instance that dies stops renewing, and another takes it once
 * it lapses. So a dead reader is replaced within `ttlMs` plus one retry period.
 *
 * The holder gives the lease up itself (and stops the work) when a renewal is
 * refused, or when it could not renew for a whole ttl (it cannot know that
 * nobody else took it), so two readers never overlap by more than a renewal.
 *
 * One gateway per data directory is the embedded store's rule, so with SQLite
 * the lease is simply held: no rows, no timers.
 */
export class StoreLease implements ChannelLease {
  private heldSince: number | null = null;
  private lastRenewed = 0;
  private timer: NodeJS.Timeout | null = null;
  private lostHandlers: (() => void)[] = [];
  private stopped = false;

  constructor(
    private readonly store: Store,
    readonly name: string,
    private readonly owner: string,
    private readonly ttlMs: number,
    private readonly logger: Logger,
  ) {}

  get held(): boolean {
    return this.store.kind === 'sqlite' || this.heldSince !== null;
  }

  onLost(fn: () => void): void {
    this.lostHandlers.push(fn);
  }

  /** Resolves true once held, false when `cancelled()` turns true first. */
  async acquire(cancelled: () => boolean): Promise<boolean> {
    if (this.store.kind === 'sqlite') return true;
    while (!cancelled() && !this.stopped) {
      if ((await this.tryTake()) === 'held') {
        this.heldSince = Date.now();
        this.logger.info({ lease: this.name }, 'lease taken: this instance does the work');
        this.timer = setInterval(() => void this.renew(), Math.max(200, Math.floor(this.ttlMs / 3)));
        this.timer.unref();
        return true;
      }
      await sleepUnless(Math.max(200, Math.floor(this.ttlMs / 3)), () => cancelled() || this.stopped);
    }
    return false;
  }

  private async tryTake(): Promise<'held' | 'refused' | 'error'> {
    try {
      if (!(await this.store.acquireLease(this.name, this.owner, this.ttlMs))) return 'refused';
      this.lastRenewed = Date.now();
      return 'held';
    } catch (err) {
      this.logger.warn({ lease: this.name, err: errorMessage(err) }, 'could not take or renew lease');
      return 'error';
    }
  }

  private async renew(): Promise<void> {
    if (this.heldSince === null) return;
    const r = await this.tryTake();
    // Unreachable store: hold on while our last renewal still runs (with a margin), then give up.
    if (r === 'held' || (r === 'error' && Date.now() - this.lastRenewed < this.ttlMs * 0.8)) return;
    this.lose();
  }

  private lose(): void {
    if (this.heldSince === null) return;
    this.heldSince = null;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.logger.warn({ lease: this.name }, 'lease lost: stopping the work it covers');
    for (const fn of this.lostHandlers) fn();
  }

  /** Gives the lease back so another instance takes over at once. Idempotent. */
  async release(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.heldSince === null || this.store.kind === 'sqlite') return;
    this.heldSince = null;
    await this.store.releaseLease(this.name, this.owner).catch(() => undefined);
  }

  status(): Record<string, unknown> {
    return { lease: this.name, held: this.held };
  }
}

function sleepUnless(ms: number, stop: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    const check = setInterval(() => stop() && done(), 50);
    function done(): void {
      clearTimeout(t);
      clearInterval(check);
      resolve();
    }
  });
}
