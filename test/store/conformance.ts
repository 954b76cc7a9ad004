import { expect } from 'chai';
import { GatewayError } from '../../src/errors.js';
import type { Clock } from '../../src/clock.js';
import type { Channel, Ticket } from '../../src/ticket.js';
import type {
  AcceptUnit,
  DueDeadline,
  FiredDeadline,
  NewTicket,
  OutboundInsert,
  OutboxInsert,
  OutboxMessage,
  RecentTicket,
  Store,
  TicketRecord,
  UnitWrites,
} from '../../src/store/types.js';

/**
 * What every Store backend must do, written against the interface alone: each
 * backend's spec calls `storeConformance` with a way to open an empty store on
 * a clock the tests move. Leases and claims may be judged by the backend's own
 * clock (the database's), so tests that wait for one to lapse both move the
 * clock and let real time pass.
 */

export interface MovableClock extends Clock {
  t: number;
  advance(ms: number): number;
}

export interface OpenedStore {
  store: Store;
  /** Opens the same data again (after `store` was closed). */
  reopen?: () => Promise<Store>;
  /** Closes whatever was opened and removes its data. */
  cleanup: () => Promise<void>;
}

export const T0 = Date.UTC(2030, 0, 15, 9, 0, 0);
const DAY = 86_400_000;

export function movableClock(t = T0): MovableClock {
  return {
    t,
    now() {
      return this.t;
    },
    advance(ms: number) {
      this.t += ms;
      return this.t;
    },
  };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** YYYYMMDD in UTC: what `dayOf` returns in these tests. */
export const utcDay = (ms: number) => new Date(ms).toISOString().slice(0, 10).replaceAll('-', '');

export function outboxRow(id: string, body: unknown = { id }, extra: Partial<OutboxInsert> = {}): OutboxInsert {
  return { routingKey: `test.${id}`, messageId: id, type: 'test.event', headers: { id, n: 1 }, body, ...extra };
}

export interface UnitOptions {
  key: string;
  channel?: Channel;
  windowMs?: number | null;
  threadRefs?: string[];
  citizenKey?: string;
  partsGroup?: string | null;
  content?: string;
  day?: (now: number) => string;
  /** Writes the new ticket adds beside its ticket.created row. */
  writes?: (id: string, now: number) => UnitWrites;
  followup?: (open: TicketRecord, now: number) => UnitWrites;
  create?: (ctx: { now: number; number: string; recent: Iterable<RecentTicket> }) => NewTicket;
  /** Deadline offsets from `now`. */
  warnAfter?: number;
  respondAfter?: number;
}

/**
 * An accept unit as intake builds one, with the rules cut down to what the
 * store must honour: a keyed id without a window, a dedupe row with one, the
 * ticket JSON serialized once and journaled by reference.
 */
export function acceptUnit(o: UnitOptions): AcceptUnit {
  const channel = o.channel ?? 'app';
  const windowMs = o.windowMs ?? null;
  const keyedId = windowMs === null ? `k-${channel}-${o.key}` : null;
  const unit: AcceptUnit = {
    channel,
    dedupeKey: o.key,
    dedupeWindowMs: windowMs,
    keyedId,
    threadRefs: o.threadRefs ?? [],
    citizenKey: o.citizenKey ?? `citizen-${o.key}`,
    repeatWindowMs: 7 * DAY,
    partsGroup: o.partsGroup ?? null,
    raw: Buffer.from(`raw ${o.key} \u00ff\u0000`, 'latin1'),
    dayOf: o.day ?? utcDay,
    followup:
      o.followup ??
      ((open, now) => ({ outbox: [outboxRow(`followup-${o.key}`, { ticketId: open.id, at: now }, { routingKey: 'ticket.followup', type: 'ticket.followup' })] })),
    create:
      o.create ??
      (({ now, number, recent }) => {
        const id = keyedId ?? `w-${channel}-${o.key}-${now}`;
        const earlier = [...recent][0];
        const repeatOf = earlier ? (earlier.repeatOf ?? earlier.id) : null;
        // Key order, spacing and non-ASCII text must come back byte for byte.
        const ticket = { schemaVersion: 1, id, number, channel, content: o.content ?? `Streetlight out — 路灯不亮 ${o.key}`, repeatOf } as unknown as Ticket;
        const json = JSON.stringify(ticket);
        const extra = o.writes?.(id, now) ?? {};
        return {
          id,
          number,
          citizenKey: unit.citizenKey,
          createdAt: now,
          respondBy: now + (o.respondAfter ?? 2000),
          acknowledgedAt: null,
          matter: o.content ?? `streetlight ${o.key}`,
          repeatOf,
          ticket,
          json,
          due: { at: now + (o.warnAfter ?? 1000), kind: 'warning' },
          dedupe: windowMs !== null,
          outbox: [{ routingKey: 'ticket.created', messageId: id, type: 'ticket.created', headers: { channel }, body: ticket, json, ticketRef: id }, ...(extra.outbox ?? [])],
          outbound: extra.outbound,
          refs: extra.refs,
        };
      }),
  };
  return unit;
}

export function outboundRow(id: string, ticketId: string | null, now: number, extra: Partial<OutboundInsert> = {}): OutboundInsert {
  return {
    id,
    ticketId,
    channel: 'app',
    kind: 'reply',
    text: `text of ${id}`,
    target: { citizen: { channelUserId: 'u1', phone: null, email: null, name: null }, source: { s: 1 }, subject: null, ticketNumber: null },
    nextAt: now,
    createdAt: now,
    ...extra,
  };
}

/** The scheduler's rule: a warning moves on to the breach at respond_by; a warning whose breach is due too fires as the breach. */
export function standardDecide(now: number) {
  return (due: DueDeadline, t: TicketRecord): FiredDeadline => {
    const kind = due.kind === 'warning' && due.respondBy <= now ? 'breach' : due.kind;
    return {
      kind,
      next: kind === 'warning' ? { kind: 'breach', at: due.respondBy } : null,
      breached: kind === 'breach' ? true : undefined,
      outbox: [outboxRow(`${kind}-${t.id}`, { ticketId: t.id, kind }, { type: `deadline.${kind}` })],
    };
  };
}

/** Takes everything the relay could take now (and confirms nothing). */
export async function drain(store: Store): Promise<OutboxMessage[]> {
  const all: OutboxMessage[] = [];
  for (;;) {
    const rows = await store.takeOutbox(100);
    all.push(...rows);
    if (rows.length < 100) return all;
  }
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

export function storeConformance(label: string, open: (clock: MovableClock) => Promise<OpenedStore>): void {
  describe(`store conformance: ${label}`, function () {
    this.timeout(30_000);
    let clock: MovableClock;
    let opened: OpenedStore;
    let store: Store;

    beforeEach(async () => {
      clock = movableClock();
      opened = await open(clock);
      store = opened.store;
    });
    afterEach(async () => {
      await opened.cleanup();
    });

    describe('accept', () => {
      it('creates a ticket, numbered for its day, and returns the record with the exact JSON', async () => {
        const r = await store.accept(acceptUnit({ key: 'a1' }));
        expect(r.status).to.equal('created');
        expect(r.now).to.equal(T0);
        expect(r.record.number).to.equal(`${utcDay(T0)}-000001`);
        expect(r.record.createdAt).to.equal(T0);
        expect(r.record.breached).to.equal(false);
        const again = await store.getTicket(r.record.id);
        expect(again?.json).to.equal(r.record.json);
        expect(again?.ticket).to.deep.equal(JSON.parse(r.record.json));
        expect(again?.citizenKey).to.equal('citizen-a1');
        expect((await store.getTicketByNumber(r.record.number))?.id).to.equal(r.record.id);
        expect(await store.getTicket('nope')).to.equal(null);
      });

      it('a keyed message accepted twice is a duplicate of the first ticket', async () => {
        const first = await store.accept(acceptUnit({ key: 'dup' }));
        clock.advance(5 * DAY);
        const second = await store.accept(acceptUnit({ key: 'dup' }));
        expect(second.status).to.equal('duplicate');
        expect(second.record.id).to.equal(first.record.id);
        expect(second.record.json).to.equal(first.record.json);
        expect(await drain(store)).to.have.length(1);
      });

      it('a windowed key is a duplicate within its window and a new ticket after it', async () => {
        const first = await store.accept(acceptUnit({ key: 'sms1', channel: 'sms', windowMs: 60_000 }));
        clock.advance(30_000);
        const within = await store.accept(acceptUnit({ key: 'sms1', channel: 'sms', windowMs: 60_000 }));
        expect(within.status).to.equal('duplicate');
        expect(within.record.id).to.equal(first.record.id);
        // The window runs from when the key was last seen.
        clock.advance(59_000);
        expect((await store.accept(acceptUnit({ key: 'sms1', channel: 'sms', windowMs: 60_000 }))).status).to.equal('duplicate');
        clock.advance(60_001);
        const after = await store.accept(acceptUnit({ key: 'sms1', channel: 'sms', windowMs: 60_000 }));
        expect(after.status).to.equal('created');
        expect(after.record.id).to.not.equal(first.record.id);
      });

      it('a message naming a ticket number is a follow-up on it, and a redelivery of it a duplicate', async () => {
        const t = await store.accept(acceptUnit({ key: 'orig' }));
        await drain(store);
        clock.advance(1000);
        const f = await store.accept(acceptUnit({ key: 'reply1', threadRefs: ['nothing-here', t.record.number] }));
        expect(f.status).to.equal('followup');
        expect(f.record.id).to.equal(t.record.id);
        const rows = await drain(store);
        expect(rows.map((r) => r.messageId)).to.deep.equal(['followup-reply1']);
        expect(JSON.parse(rows[0]!.body)).to.deep.equal({ ticketId: t.record.id, at: T0 + 1000 });
        const again = await store.accept(acceptUnit({ key: 'reply1', threadRefs: [t.record.number] }));
        expect(again.status).to.equal('duplicate');
        expect(again.record.id).to.equal(t.record.id);
        expect(await drain(store)).to.have.length(0);
      });

      it('a message naming an upstream id stored as a ref is a follow-up on its ticket', async () => {
        const t = await store.accept(acceptUnit({ key: 'mail1', channel: 'mailbox', writes: (id) => ({ refs: [{ ref: '<m1@city.example>', ticketId: id }] }) }));
        const f = await store.accept(acceptUnit({ key: 'mail2', channel: 'mailbox', threadRefs: ['<unknown@x>', '<m1@city.example>'] }));
        expect(f.status).to.equal('followup');
        expect(f.record.id).to.equal(t.record.id);
        const none = await store.accept(acceptUnit({ key: 'mail3', channel: 'mailbox', threadRefs: ['<unknown@x>', '20300115-999999'] }));
        expect(none.status).to.equal('created');
      });

      it('a follow-up writes the outbound and refs its callback returns', async () => {
        const t = await store.accept(acceptUnit({ key: 'o1' }));
        await store.accept(
          acceptUnit({
            key: 'o2',
            threadRefs: [t.record.number],
            followup: (open, now) => ({ outbound: [outboundRow('notice:o2', open.id, now, { kind: 'notice' })], refs: [{ ref: 'up-o2', ticketId: open.id }] }),
          }),
        );
        expect((await store.outboundOfTicket(t.record.id, 10)).map((o) => o.id)).to.deep.equal(['notice:o2']);
        expect((await store.accept(acceptUnit({ key: 'o3', threadRefs: ['up-o2'] }))).record.id).to.equal(t.record.id);
      });

      it('numbers are sequential per day and start again on a new day', async () => {
        const day = utcDay(T0);
        const a = await store.accept(acceptUnit({ key: 'n1' }));
        const b = await store.accept(acceptUnit({ key: 'n2' }));
        const c = await store.accept(acceptUnit({ key: 'n3' }));
        expect([a, b, c].map((r) => r.record.number)).to.deep.equal([`${day}-000001`, `${day}-000002`, `${day}-000003`]);
        clock.advance(DAY);
        const d = await store.accept(acceptUnit({ key: 'n4' }));
        expect(d.record.number).to.equal(`${utcDay(T0 + DAY)}-000001`);
      });

      it('200 concurrent accepts get 200 distinct numbers', async () => {
        const results = await Promise.all(Array.from({ length: 200 }, (_, i) => store.accept(acceptUnit({ key: `c${i}` }))));
        expect(results.every((r) => r.status === 'created')).to.equal(true);
        const numbers = results.map((r) => r.record.number).sort();
        expect(new Set(numbers).size).to.equal(200);
        expect(numbers[0]).to.equal(`${utcDay(T0)}-000001`);
        expect(numbers[199]).to.equal(`${utcDay(T0)}-000200`);
      });

      it('the same key accepted concurrently is one ticket', async () => {
        const results = await Promise.all(Array.from({ length: 8 }, () => store.accept(acceptUnit({ key: 'same', channel: 'sms', windowMs: 60_000 }))));
        expect(results.filter((r) => r.status === 'created')).to.have.length(1);
        expect(new Set(results.map((r) => r.record.id)).size).to.equal(1);
      });

      it('recent tickets of the citizen reach create(), newest first', async () => {
        const a = await store.accept(acceptUnit({ key: 'r1', citizenKey: 'cz' }));
        clock.advance(1000);
        const b = await store.accept(acceptUnit({ key: 'r2', citizenKey: 'cz' }));
        expect(b.record.repeatOf).to.equal(a.record.id);
        clock.advance(1000);
        let seen: RecentTicket[] = [];
        const base = acceptUnit({ key: 'r3', citizenKey: 'cz' });
        await store.accept({
          ...base,
          create: (ctx) => {
            seen = [...ctx.recent];
            return base.create(ctx);
          },
        });
        expect(seen.map((r) => r.id)).to.deep.equal([b.record.id, a.record.id]);
        expect(seen[0]!.repeatOf).to.equal(a.record.id);
        // Outside the repeat window nothing is recent.
        clock.advance(8 * DAY);
        const far = await store.accept(acceptUnit({ key: 'r4', citizenKey: 'cz' }));
        expect(far.record.repeatOf).to.equal(null);
      });

      it('when create() throws, the same error comes out and nothing is written', async () => {
        const refused = new GatewayError('INPUT_INVALID', 'not a ticket', { transient: false });
        const base = acceptUnit({ key: 'bad', windowMs: 60_000, partsGroup: 'g-bad' });
        await store.putPart('app', 'g-bad', 1, Buffer.from('x'), '{}');
        const err = await rejection(store.accept({ ...base, create: () => { throw refused; } }));
        expect(err).to.equal(refused);
        expect(await drain(store)).to.have.length(0);
        expect(await store.getParts('app', 'g-bad')).to.have.length(1);
        expect(await store.openDeadlines()).to.equal(0);
        // Neither the number nor the dedupe key was used up.
        const ok = await store.accept(acceptUnit({ key: 'bad', windowMs: 60_000 }));
        expect(ok.status).to.equal('created');
        expect(ok.record.number).to.equal(`${utcDay(T0)}-000001`);
      });

      it('a duplicate, a follow-up and a new ticket each drop the parts group they consumed', async () => {
        for (const g of ['g1', 'g2', 'g3']) await store.putPart('sms', g, 1, Buffer.from(g), 'm');
        const t = await store.accept(acceptUnit({ key: 'p1', channel: 'sms', partsGroup: 'g1' }));
        expect(await store.getParts('sms', 'g1')).to.have.length(0);
        await store.accept(acceptUnit({ key: 'p1', channel: 'sms', partsGroup: 'g2' }));
        expect(await store.getParts('sms', 'g2')).to.have.length(0);
        const f = await store.accept(acceptUnit({ key: 'p3', channel: 'sms', partsGroup: 'g3', threadRefs: [t.record.number] }));
        expect(f.status).to.equal('followup');
        expect(await store.getParts('sms', 'g3')).to.have.length(0);
      });
    });

    describe('journal writes', () => {
      it('recordOnce writes the first time only', async () => {
        await store.putPart('sms', 'ge', 1, Buffer.from('e'), 'm');
        expect(await store.recordOnce('sms', 'empty:k1', { outbox: [outboxRow('rej1')] }, 'ge')).to.equal(true);
        expect(await store.getParts('sms', 'ge')).to.have.length(0);
        expect(await store.recordOnce('sms', 'empty:k1', { outbox: [outboxRow('rej2')] })).to.equal(false);
        expect(await store.recordOnce('app', 'empty:k1', { outbox: [outboxRow('rej3')] })).to.equal(true);
        expect((await drain(store)).map((r) => r.messageId)).to.deep.equal(['rej1', 'rej3']);
      });

      it('append journals rows that change no ticket, with their headers and body', async () => {
        await store.append({ outbox: [outboxRow('x1', { a: 'é', n: 1 }), outboxRow('x2', null, { json: '{"pre":"serialized"}' })] });
        const rows = await drain(store);
        expect(rows.map((r) => r.messageId)).to.deep.equal(['x1', 'x2']);
        expect(rows[0]).to.include({ routingKey: 'test.x1', type: 'test.event', body: JSON.stringify({ a: 'é', n: 1 }), createdAt: T0 });
        expect(rows[0]!.headers).to.deep.equal({ id: 'x1', n: 1 });
        expect(rows[1]!.body).to.equal('{"pre":"serialized"}');
        expect(rows[1]!.seq).to.be.greaterThan(rows[0]!.seq);
      });

      it('calls onOutbox after a commit that added outbox rows', async () => {
        let calls = 0;
        store.onOutbox = () => calls++;
        await store.kvSet('app', 'k', 'v');
        const before = calls;
        await store.append({ outbox: [outboxRow('w1')] });
        expect(calls).to.be.greaterThan(before);
      });
    });

    describe('tickets', () => {
      it('updateTicket applies a change with its writes, or reports no change', async () => {
        const t = await store.accept(acceptUnit({ key: 'u1' }));
        await drain(store);
        clock.advance(500);
        const r = await store.updateTicket(t.record.id, (rec, now) => {
          expect(rec.id).to.equal(t.record.id);
          return rec.acknowledgedAt === null ? { acknowledgedAt: now, outbox: [outboxRow('ack-u1')] } : null;
        });
        expect(r?.changed).to.equal(true);
        expect(r?.record.acknowledgedAt).to.equal(T0 + 500);
        expect((await store.getTicket(t.record.id))?.acknowledgedAt).to.equal(T0 + 500);
        const again = await store.updateTicket(t.record.id, (rec, now) => (rec.acknowledgedAt === null ? { acknowledgedAt: now } : null));
        expect(again?.changed).to.equal(false);
        expect(again?.record.acknowledgedAt).to.equal(T0 + 500);
        expect((await drain(store)).map((m) => m.messageId)).to.deep.equal(['ack-u1']);
        expect(await store.updateTicket('missing', () => ({ breached: true }))).to.equal(null);
      });

      it('updateTicket sets responded and breached, and clearDue cancels the deadlines', async () => {
        const t = await store.accept(acceptUnit({ key: 'u2' }));
        expect(await store.openDeadlines()).to.equal(1);
        await store.updateTicket(t.record.id, (_rec, now) => ({ respondedAt: now, breached: true, clearDue: true }));
        const rec = await store.getTicket(t.record.id);
        expect(rec?.respondedAt).to.equal(T0);
        expect(rec?.breached).to.equal(true);
        expect(await store.openDeadlines()).to.equal(0);
        expect(await store.nextDeadline()).to.equal(null);
      });

      it('an error thrown by a change comes out unchanged and writes nothing', async () => {
        const t = await store.accept(acceptUnit({ key: 'u3' }));
        await drain(store);
        const boom = new Error('change refused');
        expect(await rejection(store.updateTicket(t.record.id, () => { throw boom; }))).to.equal(boom);
        expect(await drain(store)).to.have.length(0);
      });
    });

    describe('outgoing messages', () => {
      it('addReply: created, duplicate, full, and NOT_FOUND for an unknown ticket', async () => {
        const t = await store.accept(acceptUnit({ key: 'rep' }));
        expect(await store.addReply(outboundRow('reply:1', t.record.id, T0), 2)).to.equal('created');
        expect(await store.addReply(outboundRow('reply:1', t.record.id, T0), 2)).to.equal('duplicate');
        expect(await store.addReply(outboundRow('reply:2', t.record.id, T0), 2)).to.equal('created');
        expect(await store.addReply(outboundRow('reply:3', t.record.id, T0), 2)).to.equal('full');
        // Other kinds do not count against the replies.
        await store.append({ outbound: [outboundRow('notice:1', t.record.id, T0, { kind: 'notice' })] });
        expect(await store.addReply(outboundRow('reply:1', t.record.id, T0), 3)).to.equal('duplicate');
        expect(await store.addReply(outboundRow('reply:3', t.record.id, T0), 3)).to.equal('created');
        const err = await rejection(store.addReply(outboundRow('reply:x', 'no-such-ticket', T0), 2));
        expect(err).to.be.instanceOf(GatewayError);
        expect((err as GatewayError).code).to.equal('NOT_FOUND');
        expect(store.lastWriteError).to.equal(null);
      });

      it('concurrent replies do not overfill a ticket', async () => {
        const t = await store.accept(acceptUnit({ key: 'many' }));
        const r = await Promise.all(Array.from({ length: 10 }, (_, i) => store.addReply(outboundRow(`reply:${i}`, t.record.id, T0), 3)));
        expect(r.filter((x) => x === 'created')).to.have.length(3);
        expect(r.filter((x) => x === 'full')).to.have.length(7);
      });

      it('claimOutbound takes due rows once; outboundSent records it and applies the change', async () => {
        const t = await store.accept(
          acceptUnit({ key: 'snd', writes: (id, now) => ({ outbound: [outboundRow(`receipt:${id}`, id, now, { kind: 'receipt' }), outboundRow('later', id, now + 60_000)] }) }),
        );
        await drain(store);
        const claimed = await store.claimOutbound(T0, 10, 'sender-1', 10_000);
        expect(claimed.map((o) => o.id)).to.deep.equal([`receipt:${t.record.id}`]);
        expect(claimed[0]).to.include({ state: 'pending', attempts: 0, kind: 'receipt', ticketId: t.record.id, channel: 'app' });
        expect(claimed[0]!.target.source).to.deep.equal({ s: 1 });
        expect(await store.claimOutbound(T0, 10, 'sender-2', 10_000)).to.have.length(0);
        expect(await store.nextOutboundAfter(T0)).to.equal(T0 + 60_000);
        clock.advance(100);
        await store.outboundSent(claimed[0]!.id, { via: 'app-push', upstreamId: 'up-1' }, (rec, now) =>
          rec.acknowledgedAt === null ? { acknowledgedAt: now, outbox: [outboxRow('acked')], refs: [{ ref: 'up-1', ticketId: rec.id }] } : null,
        );
        expect((await store.getTicket(t.record.id))?.acknowledgedAt).to.equal(T0 + 100);
        expect((await drain(store)).map((m) => m.messageId)).to.deep.equal(['acked']);
        const row = (await store.outboundOfTicket(t.record.id, 10)).find((o) => o.id === claimed[0]!.id);
        expect(row).to.include({ state: 'sent', via: 'app-push', upstreamId: 'up-1', attempts: 1, sentAt: T0 + 100 });
        // The ref names the ticket from now on.
        expect((await store.accept(acceptUnit({ key: 'ans', threadRefs: ['up-1'] }))).status).to.equal('followup');
        expect(await store.outboundDelivery('app', 'up-1', 'delivered')).to.equal(true);
        expect(await store.outboundDelivery('app', 'up-unknown', 'delivered')).to.equal(false);
        expect((await store.outboundOfTicket(t.record.id, 10)).find((o) => o.id === claimed[0]!.id)?.delivery).to.equal('delivered');
        expect(await store.claimOutbound(T0 + 100, 10, 'sender-1', 10_000)).to.have.length(0);
      });

      it('outboundRetry postpones the row and releases it; outboundFailed journals its writes', async () => {
        const t = await store.accept(acceptUnit({ key: 'rt' }));
        await store.addReply(outboundRow('reply:r', t.record.id, T0), 5);
        const [row] = await store.claimOutbound(T0, 10, 'sender-1', 10_000);
        await store.outboundRetry(row!.id, T0 + 5000, '{"code":"SEND_TRANSIENT"}');
        expect(await store.claimOutbound(T0 + 4999, 10, 'sender-2', 10_000)).to.have.length(0);
        expect(await store.nextOutboundAfter(T0)).to.equal(T0 + 5000);
        const [again] = await store.claimOutbound(T0 + 5000, 10, 'sender-2', 10_000);
        expect(again).to.include({ id: 'reply:r', attempts: 1, error: '{"code":"SEND_TRANSIENT"}', state: 'pending' });
        await drain(store);
        await store.outboundFailed('reply:r', '{"code":"SEND_PERMANENT"}', { outbox: [outboxRow('reply.failed-r')] });
        const [failed] = await store.outboundOfTicket(t.record.id, 10);
        expect(failed).to.include({ state: 'failed', attempts: 2, error: '{"code":"SEND_PERMANENT"}' });
        expect((await drain(store)).map((m) => m.messageId)).to.deep.equal(['reply.failed-r']);
        expect(await store.claimOutbound(T0 + 100_000, 10, 'sender-2', 10_000)).to.have.length(0);
        expect(await store.nextOutboundAfter(0)).to.equal(null);
      });

      it('a claim whose lease lapsed is taken by another sender', async () => {
        await store.append({ outbound: [outboundRow('notice:n', null, T0, { kind: 'notice' })] });
        expect(await store.claimOutbound(T0, 10, 'sender-1', 300)).to.have.length(1);
        expect(await store.claimOutbound(T0, 10, 'sender-2', 300)).to.have.length(0);
        clock.advance(1000);
        await sleep(500);
        const taken = await store.claimOutbound(clock.now(), 10, 'sender-2', 10_000);
        expect(taken.map((o) => o.id)).to.deep.equal(['notice:n']);
      });

      it('outboundOfTicket gives the newest rows, oldest first', async () => {
        const t = await store.accept(acceptUnit({ key: 'hist' }));
        for (let i = 1; i <= 5; i++) {
          clock.advance(10);
          await store.addReply(outboundRow(`reply:h${i}`, t.record.id, clock.now()), 10);
        }
        expect((await store.outboundOfTicket(t.record.id, 3)).map((o) => o.id)).to.deep.equal(['reply:h3', 'reply:h4', 'reply:h5']);
        expect(await store.outboundOfTicket('other', 3)).to.deep.equal([]);
      });
    });

    describe('deadlines', () => {
      it('fires the warning, then the breach, each once', async () => {
        const t = await store.accept(acceptUnit({ key: 'd1', warnAfter: 1000, respondAfter: 2000 }));
        await drain(store);
        expect(await store.nextDeadline()).to.equal(T0 + 1000);
        expect(await store.openDeadlines()).to.equal(1);
        expect(await store.fireDue(T0 + 999, 10, standardDecide(T0 + 999))).to.deep.equal([]);
        const w = await store.fireDue(T0 + 1000, 10, standardDecide(T0 + 1000));
        expect(w.map((x) => [x.due.ticketId, x.due.kind, x.due.dueAt, x.due.respondBy, x.fired.kind])).to.deep.equal([[t.record.id, 'warning', T0 + 1000, T0 + 2000, 'warning']]);
        expect(await store.fireDue(T0 + 1500, 10, standardDecide(T0 + 1500))).to.deep.equal([]);
        expect(await store.nextDeadline()).to.equal(T0 + 2000);
        expect((await store.getTicket(t.record.id))?.breached).to.equal(false);
        const b = await store.fireDue(T0 + 2000, 10, standardDecide(T0 + 2000));
        expect(b.map((x) => [x.due.kind, x.fired.kind])).to.deep.equal([['breach', 'breach']]);
        expect((await store.getTicket(t.record.id))?.breached).to.equal(true);
        expect(await store.nextDeadline()).to.equal(null);
        expect(await store.openDeadlines()).to.equal(0);
        expect(await store.fireDue(T0 + 10_000, 10, standardDecide(T0 + 10_000))).to.deep.equal([]);
        expect((await drain(store)).map((m) => m.messageId)).to.deep.equal([`warning-${t.record.id}`, `breach-${t.record.id}`]);
      });

      it('a warning whose breach is due too fires as the breach', async () => {
        const t = await store.accept(acceptUnit({ key: 'd2' }));
        const r = await store.fireDue(T0 + 5000, 10, standardDecide(T0 + 5000));
        expect(r.map((x) => [x.due.kind, x.fired.kind])).to.deep.equal([['warning', 'breach']]);
        expect((await store.getTicket(t.record.id))?.breached).to.equal(true);
        expect(await store.openDeadlines()).to.equal(0);
      });

      it('decide → null fires nothing and writes nothing', async () => {
        const t = await store.accept(acceptUnit({ key: 'd3' }));
        await drain(store);
        const seen: string[] = [];
        const r = await store.fireDue(T0 + 1000, 10, (due) => {
          seen.push(due.ticketId);
          return null;
        });
        expect(seen).to.deep.equal([t.record.id]);
        expect(r).to.deep.equal([]);
        expect(await drain(store)).to.have.length(0);
        expect((await store.getTicket(t.record.id))?.breached).to.equal(false);
      });

      it('opsSummary counts open, past warning and breached today, the next due and the oldest outbox row', async () => {
        const dayStart = T0 - 3_600_000;
        const empty = await store.opsSummary(T0, dayStart);
        expect(empty).to.deep.equal({ open: 0, pastWarning: 0, breachedToday: 0, nextDue: null, outboxOldestAt: null });
        await store.accept(acceptUnit({ key: 'ops-a', warnAfter: 1000, respondAfter: 2000 }));
        await store.accept(acceptUnit({ key: 'ops-b', warnAfter: 5000, respondAfter: 10_000 }));
        await store.accept(acceptUnit({ key: 'ops-c', warnAfter: 1000, respondAfter: 2000 }));
        expect(await store.opsSummary(T0, dayStart)).to.deep.equal({ open: 3, pastWarning: 0, breachedToday: 0, nextDue: T0 + 1000, outboxOldestAt: T0 });
        // Past the warning time but not fired yet counts too: the operator sees it either way.
        expect((await store.opsSummary(T0 + 1500, dayStart)).pastWarning).to.equal(2);
        await store.fireDue(T0 + 2000, 10, standardDecide(T0 + 2000));
        expect(await store.opsSummary(T0 + 2000, dayStart)).to.include({ open: 1, pastWarning: 0, breachedToday: 2, nextDue: T0 + 5000 });
        expect((await store.opsSummary(T0 + 2000, T0 + 2001)).breachedToday).to.equal(0);
        await store.fireDue(T0 + 5000, 10, standardDecide(T0 + 5000));
        expect(await store.opsSummary(T0 + 5000, dayStart)).to.include({ open: 1, pastWarning: 1, nextDue: T0 + 10_000 });
        // Taken is not gone: a row leaves the outbox (and the backlog) only once confirmed.
        const taken = await drain(store);
        expect((await store.opsSummary(T0 + 5000, dayStart)).outboxOldestAt).to.equal(T0);
        await store.confirmOutbox(taken.map((m) => m.seq));
        expect((await store.opsSummary(T0 + 5000, dayStart)).outboxOldestAt).to.equal(null);
      });

      it('fires due events earliest first, at most `limit` per call', async () => {
        for (let i = 0; i < 5; i++) {
          await store.accept(acceptUnit({ key: `lim${i}`, warnAfter: 1000 + i }));
        }
        const first = await store.fireDue(T0 + 1004, 3, standardDecide(T0 + 1004));
        expect(first.map((x) => x.due.dueAt)).to.deep.equal([T0 + 1000, T0 + 1001, T0 + 1002]);
        const rest = await store.fireDue(T0 + 1004, 3, standardDecide(T0 + 1004));
        expect(rest.map((x) => x.due.dueAt)).to.deep.equal([T0 + 1003, T0 + 1004]);
      });

      it('two concurrent fireDue calls fire each event once', async () => {
        const ids = new Set<string>();
        for (let i = 0; i < 20; i++) ids.add((await store.accept(acceptUnit({ key: `cc${i}` }))).record.id);
        await drain(store);
        const [a, b] = await Promise.all([store.fireDue(T0 + 1000, 100, standardDecide(T0 + 1000)), store.fireDue(T0 + 1000, 100, standardDecide(T0 + 1000))]);
        const fired = [...a, ...b].map((x) => x.due.ticketId);
        expect(fired).to.have.length(20);
        expect(new Set(fired)).to.deep.equal(ids);
        expect(await drain(store)).to.have.length(20);
      });
    });

    describe('outbox relay', () => {
      it('takeOutbox hands out rows once, in order; confirm removes them; release hands them out again', async () => {
        await store.append({ outbox: [outboxRow('m1'), outboxRow('m2'), outboxRow('m3')] });
        expect(await store.hasUntaken()).to.equal(true);
        const first = await store.takeOutbox(2);
        expect(first.map((m) => m.messageId)).to.deep.equal(['m1', 'm2']);
        const second = await store.takeOutbox(10);
        expect(second.map((m) => m.messageId)).to.deep.equal(['m3']);
        expect(await store.takeOutbox(10)).to.deep.equal([]);
        expect(await store.hasUntaken()).to.equal(false);
        await store.confirmOutbox([first[0]!.seq]);
        await store.releaseOutbox();
        expect(await store.hasUntaken()).to.equal(true);
        const again = await store.takeOutbox(10);
        expect(again.map((m) => m.messageId)).to.deep.equal(['m2', 'm3']);
        await store.confirmOutbox(again.map((m) => m.seq));
        await store.releaseOutbox();
        expect(await store.takeOutbox(10)).to.deep.equal([]);
        expect(await store.hasUntaken()).to.equal(false);
      });

      it('releasing some rows hands those out again (and may repeat later ones the relay still holds); the rest stay taken', async () => {
        await store.append({ outbox: [outboxRow('r1'), outboxRow('r2'), outboxRow('r3'), outboxRow('r4')] });
        const taken = await store.takeOutbox(10);
        expect(taken.map((m) => m.messageId)).to.deep.equal(['r1', 'r2', 'r3', 'r4']);
        await store.releaseOutbox([taken[1]!.seq, taken[2]!.seq]);
        const again = (await store.takeOutbox(10)).map((m) => m.messageId);
        // Never r1: nothing before the first row handed back comes out again.
        expect(again.slice(0, 2)).to.deep.equal(['r2', 'r3']);
        expect(again).to.not.include('r1');
        expect(store.kind === 'sqlite' ? ['r2', 'r3', 'r4'] : ['r2', 'r3']).to.deep.equal(again);
        await store.confirmOutbox(taken.map((m) => m.seq));
        await store.releaseOutbox();
        expect(await store.takeOutbox(10)).to.deep.equal([]);
      });

      it('ticket.created rows carry the ticket JSON byte for byte', async () => {
        const t = await store.accept(acceptUnit({ key: 'json', content: 'Spaces  kept, "quotes", 中文, emoji 🚦' }));
        const [row] = await store.takeOutbox(10);
        expect(row).to.include({ messageId: t.record.id, type: 'ticket.created', routingKey: 'ticket.created', createdAt: T0 });
        expect(row!.body).to.equal(t.record.json);
        expect(row!.headers).to.deep.equal({ channel: 'app' });
      });

      it('outboxSummary: depth, the oldest row and the rows a relay holds, from the store itself', async () => {
        expect(await store.outboxSummary()).to.deep.equal({ depth: 0, oldestAt: null, oldestRoutingKey: null, taken: 0, lapsed: 0 });
        await store.append({ outbox: [outboxRow('s1', { n: 1 }, { routingKey: 'ticket.created.sms.help' })] });
        clock.advance(1000);
        await store.append({ outbox: [outboxRow('s2'), outboxRow('s3')] });
        expect(await store.outboxSummary()).to.deep.equal({ depth: 3, oldestAt: T0, oldestRoutingKey: 'ticket.created.sms.help', taken: 0, lapsed: 0 });
        const [first] = await store.takeOutbox(1);
        // A shared store's relay holds rows under a lease; the embedded one holds them in memory only.
        expect((await store.outboxSummary()).taken).to.equal(store.kind === 'sqlite' ? 0 : 1);
        await store.confirmOutbox([first!.seq]);
        const after = await store.outboxSummary();
        expect(after).to.include({ depth: 2, oldestAt: T0 + 1000, oldestRoutingKey: 'test.s2', taken: 0, lapsed: 0 });
      });

      it('readyCount and outboxDepth are numbers; depth follows the journal', async () => {
        await store.append({ outbox: [outboxRow('d1'), outboxRow('d2')] });
        expect(store.readyCount()).to.be.at.least(0);
        let depth = -1;
        for (let i = 0; i < 50 && depth !== 2; i++) {
          depth = store.outboxDepth();
          if (depth !== 2) await sleep(100);
        }
        expect(depth).to.equal(2);
        await store.confirmOutbox((await store.takeOutbox(10)).map((m) => m.seq));
        for (let i = 0; i < 50 && depth !== 0; i++) {
          depth = store.outboxDepth();
          if (depth !== 0) await sleep(100);
        }
        expect(depth).to.equal(0);
      });
    });

    describe('channel state', () => {
      it('kv get and set, per channel', async () => {
        expect(await store.kvGet('telegram', 'offset')).to.equal(null);
        await store.kvSet('telegram', 'offset', '41');
        await store.kvSet('telegram', 'offset', '42');
        await store.kvSet('mailbox', 'offset', 'x');
        expect(await store.kvGet('telegram', 'offset')).to.equal('42');
        expect(await store.kvGet('mailbox', 'offset')).to.equal('x');
      });

      it('putPart keeps each index once and returns every part of the group', async () => {
        const one = await store.putPart('sms', 'grp', 2, Buffer.from([0, 1, 2, 255]), 'meta-2');
        expect(one.map((p) => p.index)).to.deep.equal([2]);
        clock.advance(100);
        const two = await store.putPart('sms', 'grp', 1, Buffer.from('first'), 'meta-1');
        expect(two.map((p) => [p.index, p.meta])).to.deep.equal([[1, 'meta-1'], [2, 'meta-2']]);
        expect(two[1]!.data.equals(Buffer.from([0, 1, 2, 255]))).to.equal(true);
        expect(two[1]!.receivedAt.getTime()).to.equal(T0);
        const dup = await store.putPart('sms', 'grp', 2, Buffer.from('other'), 'other');
        expect(dup).to.have.length(2);
        expect(dup[1]!.meta).to.equal('meta-2');
        expect(await store.getParts('app', 'grp')).to.deep.equal([]);
        expect((await store.getParts('sms', 'grp')).map((p) => p.index)).to.deep.equal([1, 2]);
        await store.dropParts('sms', 'grp');
        expect(await store.getParts('sms', 'grp')).to.deep.equal([]);
      });

      it('staleGroups lists groups whose first part is older than `before`, oldest first', async () => {
        await store.putPart('sms', 'old', 1, Buffer.from('a'), 'm');
        clock.advance(1000);
        await store.putPart('sms', 'newer', 1, Buffer.from('b'), 'm');
        await store.putPart('sms', 'old', 2, Buffer.from('c'), 'm');
        clock.advance(1000);
        await store.putPart('sms', 'newest', 1, Buffer.from('d'), 'm');
        expect(await store.staleGroups('sms', T0 + 1001, 10)).to.deep.equal(['old', 'newer']);
        expect(await store.staleGroups('sms', T0 + 1001, 1)).to.deep.equal(['old']);
        expect(await store.staleGroups('sms', T0, 10)).to.deep.equal([]);
        expect(await store.staleGroups('app', T0 + 5000, 10)).to.deep.equal([]);
      });
    });

    describe('leases', () => {
      it('a second owner is refused until the ttl passes; release hands it over', async () => {
        expect(await store.acquireLease('imap', 'a', 400)).to.equal(true);
        expect(await store.acquireLease('imap', 'b', 400)).to.equal(false);
        expect(await store.acquireLease('imap', 'a', 400)).to.equal(true);
        expect(await store.acquireLease('telegram', 'b', 400)).to.equal(true);
        clock.advance(1000);
        await sleep(600);
        expect(await store.acquireLease('imap', 'b', 10_000)).to.equal(true);
        expect(await store.acquireLease('imap', 'a', 10_000)).to.equal(false);
        // Only the holder's release counts.
        await store.releaseLease('imap', 'a');
        expect(await store.acquireLease('imap', 'a', 10_000)).to.equal(false);
        await store.releaseLease('imap', 'b');
        expect(await store.acquireLease('imap', 'a', 10_000)).to.equal(true);
      });
    });

    describe('operations', () => {
      it('probe writes and reports null; whenDurable resolves', async () => {
        expect(await store.probe()).to.equal(null);
        expect(store.lastWriteError).to.equal(null);
        await store.whenDurable();
      });

      it('close is idempotent, waits for running units, and refuses new ones', async () => {
        const pending = store.accept(acceptUnit({ key: 'inflight' }));
        const closing = store.close();
        await Promise.all([closing, store.close()]);
        expect((await pending).status).to.equal('created');
        expect(store.isClosed).to.equal(true);
        const err = await rejection(store.accept(acceptUnit({ key: 'late' })));
        expect(err).to.be.instanceOf(GatewayError);
        expect((err as GatewayError).code).to.equal('STORE_CLOSED');
        expect(await store.probe()).to.be.instanceOf(Error);
        await store.close();
      });

      it('data survives a reopen', async function () {
        if (!opened.reopen) this.skip();
        const t = await store.accept(acceptUnit({ key: 'keep', writes: (id, now) => ({ outbound: [outboundRow(`receipt:${id}`, id, now, { kind: 'receipt' })] }) }));
        await store.kvSet('app', 'cursor', '7');
        await store.putPart('sms', 'kept', 1, Buffer.from('p'), 'm');
        await store.close();
        const again = await opened.reopen!();
        expect((await again.getTicket(t.record.id))?.json).to.equal(t.record.json);
        expect(await again.kvGet('app', 'cursor')).to.equal('7');
        expect(await again.getParts('sms', 'kept')).to.have.length(1);
        expect(await again.openDeadlines()).to.equal(1);
        expect((await again.takeOutbox(10)).map((m) => m.body)).to.deep.equal([t.record.json]);
        expect((await again.claimOutbound(T0, 10, 's', 10_000)).map((o) => o.id)).to.deep.equal([`receipt:${t.record.id}`]);
        expect((await again.accept(acceptUnit({ key: 'keep' }))).status).to.equal('duplicate');
        expect((await again.accept(acceptUnit({ key: 'next' }))).record.number).to.equal(`${utcDay(T0)}-000002`);
      });
    });
  });
}
