import { GatewayError } from '../../errors.js';

interface Waiter {
  resolve: () => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * Admission for outgoing submit_sm: at most `window` unacknowledged at once (the
 * SMSC's window), at most `tps` started in any one-second span (the operator's
 * contracted rate), nothing while the link is down or the SMSC said it is
 * throttling us. Callers queue in order; the queue itself is bounded.
 */
export class SubmitGate {
  private outstanding = 0;
  private readonly starts: number[] = [];
  private holdUntil = 0;
  private queue: Waiter[] = [];
  private wakeTimer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(
    private readonly window: number,
    private readonly tps: number,
    private readonly isOpen: () => boolean,
    private readonly maxQueue = 1000,
    private readonly now: () => number = () => performance.now(),
  ) {}

  get inFlight(): number {
    return this.outstanding;
  }

  get queued(): number {
    return this.queue.length;
  }

  /** Resolves when one submit may go out; the caller must `release()` once it is answered or abandoned. */
  acquire(waitMs: number): Promise<void> {
    if (this.closed) return Promise.reject(new GatewayError('SEND_TRANSIENT', 'SMS channel is stopping'));
    if (this.queue.length >= this.maxQueue) {
      return Promise.reject(new GatewayError('SEND_TRANSIENT', `${this.queue.length} SMS already waiting to be submitted`));
    }
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          this.queue = this.queue.filter((w) => w !== waiter);
          reject(
            new GatewayError('SEND_TRANSIENT', this.isOpen() ? 'SMPP submit window stayed full' : 'SMPP link is not bound', {
              detail: { outstanding: this.outstanding, bound: this.isOpen() },
            }),
          );
        }, waitMs),
      };
      this.queue.push(waiter);
      this.pump();
    });
  }

  release(): void {
    this.outstanding = Math.max(0, this.outstanding - 1);
    this.pump();
  }

  /** The SMSC answered ESME_RTHROTTLED: send nothing for `ms`. */
  throttle(ms: number): void {
    this.holdUntil = Math.max(this.holdUntil, this.now() + ms);
    this.pump();
  }

  /** Re-check after the link came up. */
  pump(): void {
    while (this.queue.length > 0) {
      if (!this.isOpen() || this.outstanding >= this.window) return;
      const now = this.now();
      while (this.starts.length > 0 && now - this.starts[0]! >= 1000) this.starts.shift();
      let wait = 0;
      if (now < this.holdUntil) wait = this.holdUntil - now;
      else if (this.starts.length >= this.tps) wait = 1000 - (now - this.starts[0]!);
      if (wait > 0) {
        this.wakeLater(wait);
        return;
      }
      const w = this.queue.shift()!;
      clearTimeout(w.timer);
      this.outstanding++;
      this.starts.push(now);
      w.resolve();
    }
  }

  private wakeLater(ms: number): void {
    if (this.wakeTimer) return;
    this.wakeTimer = setTimeout(() => {
      this.wakeTimer = null;
      this.pump();
    }, Math.ceil(ms));
  }

  /** Fail everyone waiting (shutdown). */
  close(): void {
    this.closed = true;
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    this.wakeTimer = null;
    const q = this.queue;
    this.queue = [];
    for (const w of q) {
      clearTimeout(w.timer);
      w.reject(new GatewayError('SEND_TRANSIENT', 'SMS channel is stopping'));
    }
  }
}
