import type { Channel as AmqpChannel } from 'amqplib';

/** Names fixed by the contract (section 3). */
export const EXCHANGE = 'tickets';
export const UNROUTED_EXCHANGE = 'tickets.unrouted';
export const QUEUES = {
  created: 'tickets.created',
  events: 'tickets.events',
  rejected: 'intake.rejected',
  replies: 'tickets.replies',
  repliesFailed: 'tickets.replies.failed',
  unrouted: 'tickets.unrouted',
} as const;

const QUORUM = { durable: true, arguments: { 'x-queue-type': 'quorum' } };

export const BINDINGS: [queue: string, pattern: string][] = [
  [QUEUES.created, 'ticket.created.#'],
  [QUEUES.events, 'ticket.acknowledged.#'],
  [QUEUES.events, 'ticket.deadline.#'],
  [QUEUES.events, 'ticket.responded.#'],
  [QUEUES.events, 'ticket.followup.#'],
  [QUEUES.rejected, 'intake.rejected.#'],
  [QUEUES.repliesFailed, 'reply.failed.#'],
];

/**
 * Declared at every (re)connect: declarations are idempotent, and a broker that
 * lost its definitions (a fresh node) gets them back before the first publish.
 * The alternate exchange catches anything no binding routes, so a routing-key
 * typo parks a ticket in `tickets.unrouted` instead of dropping it.
 */
export async function declareTopology(ch: AmqpChannel): Promise<void> {
  await ch.assertExchange(UNROUTED_EXCHANGE, 'fanout', { durable: true });
  await ch.assertExchange(EXCHANGE, 'topic', { durable: true, arguments: { 'alternate-exchange': UNROUTED_EXCHANGE } });
  for (const q of Object.values(QUEUES)) await ch.assertQueue(q, QUORUM);
  await ch.bindQueue(QUEUES.unrouted, UNROUTED_EXCHANGE, '');
  for (const [q, pattern] of BINDINGS) await ch.bindQueue(q, EXCHANGE, pattern);
}
