import { GatewayError } from '../errors.js';

/**
 * At most `size` holders at once and at most `queue` waiting; the next one is refused
 * (RATE_LIMITED, so the answer carries Retry-After) instead of growing memory. Attachment
 * downloads hold a whole file (up to ATTACHMENT_MAX_BYTES, and on PostgreSQL its copy as
 * read off the socket) for as long as the answer takes to send.
 */
export class Slots {
  private held = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    private readonly size: number,
    private readonly queue: number,
    private readonly what: string,
  ) {}

  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.held >= this.size) {
      if (this.waiting.length >= this.queue) throw new GatewayError('RATE_LIMITED', `too many ${this.what} at once`);
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.held++;
    }
    try {
      return await work();
    } finally {
      // The slot passes straight to the next waiter, so `held` never drops below the work in hand.
      const next = this.waiting.shift();
      if (next) next();
      else this.held--;
    }
  }
}
