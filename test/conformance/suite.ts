import { expect } from 'chai';
import type { Channel } from '../../src/ticket.js';
import { TicketV1 } from '../../src/ticket.js';
import type { StoreChoice, TestGateway } from '../support/gateway.js';

/**
 * What every channel adapter promises, checked the same way for each, over its
 * real protocol:
 * - a retried or duplicated upstream delivery is one ticket, one id;
 * - the upstream ack comes only after the ticket is durable in the store;
 * - bad input gets a clear 4xx or lands on `intake.rejected`, never a ticket;
 * - stop is idempotent and bounded, and nothing acknowledged is lost by it.
 */
export interface DeliveryResult {
  /** The upstream was told "accepted" (HTTP 2xx, deliver_sm_resp ESME_ROK, IMAP flagged…). */
  acked: boolean;
}

export interface ConformanceHarness<Ctx = unknown> {
  channel: Channel;
  /** Start the gateway on `store` with this channel on, and whatever upstream peer it needs. */
  setup(store: StoreChoice): Promise<{ tg: TestGateway; ctx: Ctx }>;
  /** Deliver a new citizen message whose content contains `marker`. Resolves when the upstream got its answer. */
  send(ctx: Ctx, marker: string): Promise<DeliveryResult>;
  /** Deliver the very same upstream message again, as the platform does on a retry. */
  resend(ctx: Ctx, marker: string): Promise<DeliveryResult>;
  /** Deliver input that cannot become a ticket. */
  sendBad(ctx: Ctx): Promise<{ httpStatus?: number }>;
  teardown(ctx: Ctx): Promise<void>;
}

function unique(tag: string): string {
  return `${tag}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

/** Every adapter passes the same suite on each store backend. */
export function runConformance<Ctx>(h: ConformanceHarness<Ctx>): void {
  for (const store of ['sqlite', 'postgres'] as const) conformanceOn(h, store);
}

function conformanceOn<Ctx>(h: ConformanceHarness<Ctx>, store: StoreChoice): void {
  describe(`conformance: ${h.channel} adapter (${store} store)`, function () {
    this.timeout(60_000);
    let tg: TestGateway;
    let ctx: Ctx;

    before(async () => {
      ({ tg, ctx } = await h.setup(store));
    });
    after(async () => {
      await h.teardown(ctx).catch(() => {});
      await tg?.stop();
    });

    // Through the store's own reads: what a client was acknowledged for must be there already.
    const countStored = async (marker: string): Promise<number> =>
      (await tg.gateway.store.listTickets({ since: 0, limit: 10_000 })).filter((t) => t.json.includes(marker)).length;

    it('acknowledges upstream only after the ticket is durable', async () => {
      const marker = unique('durable');
      const r = await h.send(ctx, marker);
      expect(r.acked, 'upstream acknowledged').to.equal(true);
      // Same process, committed data only: the row is there the moment the ack is.
      expect((await countStored(marker))).to.equal(1);
      const [m] = await tg.created.waitFor((x) => JSON.stringify(x.body).includes(marker));
      expect(TicketV1.safeParse(m!.body).success, 'ticket matches schema v1').to.equal(true);
      expect(m!.body.channel).to.equal(h.channel);
      expect(m!.routingKey).to.equal(`ticket.created.${h.channel}.${m!.body.category}`);
    });

    it('makes one ticket of a duplicated delivery', async () => {
      const marker = unique('dup');
      expect((await h.send(ctx, marker)).acked).to.equal(true);
      expect((await h.resend(ctx, marker)).acked, 'a retry is acknowledged too').to.equal(true);
      await tg.created.waitFor((x) => JSON.stringify(x.body).includes(marker));
      const all = await tg.created.settle((x) => JSON.stringify(x.body).includes(marker), 1000);
      expect(new Set(all.map((m) => m.body.id)).size, 'one ticket id').to.equal(1);
      expect((await countStored(marker))).to.equal(1);
    });

    it('answers bad input with a 4xx or intake.rejected, never a ticket', async () => {
      const before = tg.created.messages.length;
      const rejectedBefore = tg.rejected.messages.length;
      const r = await h.sendBad(ctx);
      if (r.httpStatus !== undefined && r.httpStatus >= 400 && r.httpStatus < 500) {
        expect(r.httpStatus).to.be.within(400, 499);
      } else {
        const rej = await tg.rejected.waitFor((m) => m.body.channel === h.channel, rejectedBefore + 1);
        expect(rej.length).to.be.greaterThan(rejectedBefore);
        expect(rej.at(-1)!.routingKey).to.equal(`intake.rejected.${h.channel}`);
      }
      await new Promise((r2) => setTimeout(r2, 300));
      expect(tg.created.messages.length).to.equal(before);
    });

    it('stops idempotently within the grace period, losing nothing acknowledged', async () => {
      const marker = unique('stop');
      expect((await h.send(ctx, marker)).acked).to.equal(true);
      const adapter = tg.gateway.adapters.find((a) => a.channel === h.channel)!;
      const t0 = Date.now();
      await Promise.all([tg.gateway.stop(), tg.gateway.stop(), adapter.stop()]);
      await adapter.stop();
      expect(Date.now() - t0).to.be.lessThan(10_000);
      // Published before stop returned, or still in the journal for the next start.
      const published = tg.created.messages.some((m) => JSON.stringify(m.body).includes(marker));
      if (!published) {
        await tg.restart();
        await tg.created.waitFor((x) => JSON.stringify(x.body).includes(marker));
      }
    });
  });
}
