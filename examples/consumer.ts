/**
 * A first downstream system for the 12345 intake gateway: it consumes
 * `tickets.created` and `tickets.events`, prints one line per ticket and event,
 * and answers every new ticket with a reply through the gateway's HTTP API.
 *
 * It depends on nothing of the gateway's code, only on the contract (RabbitMQ
 * queues, message bodies, `POST /api/v1/tickets/:id/replies`), as a real
 * downstream system would. Run it with
 *
 *   AMQP_URL=amqp://guest:guest@127.0.0.1:5672 GATEWAY_URL=http://127.0.0.1:8080 \
 *   DOWNSTREAM_KEY=<key from DOWNSTREAM_API_KEYS> npx tsx examples/consumer.ts
 *
 * or the same as flags: --amqp, --gateway, --key, --prefetch, --seen-file, --reply.
 *
 * Delivery is at least once: after a crash, or when the gateway republishes, the
 * same message can arrive again. Messages are acknowledged only after they are
 * handled, and a message whose `messageId` was handled before is acknowledged
 * and skipped (remembered in a bounded in-memory set, and in --seen-file across
 * restarts). The reply's `replyId` is fixed per ticket as well, so even a message
 * handled twice (a crash between the reply and the ack) makes one reply.
 */
import amqp, { type Channel, type ConsumeMessage } from 'amqplib';
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values: flags } = parseArgs({
  options: {
    amqp: { type: 'string' },
    gateway: { type: 'string' },
    key: { type: 'string' },
    prefetch: { type: 'string' },
    'seen-file': { type: 'string' },
    reply: { type: 'string' },
  },
});

const settings = {
  amqpUrl: flags.amqp ?? process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672',
  gatewayUrl: (flags.gateway ?? process.env.GATEWAY_URL ?? 'http://127.0.0.1:8080').replace(/\/+$/, ''),
  key: flags.key ?? process.env.DOWNSTREAM_KEY ?? '',
  prefetch: Number(flags.prefetch ?? process.env.PREFETCH ?? 10),
  seenFile: flags['seen-file'] ?? process.env.SEEN_FILE ?? null,
  replyText: flags.reply ?? process.env.REPLY_TEXT ?? '【12345】您反映的问题已转交承办部门办理，我们会尽快联系您。',
};
if (!settings.key) {
  console.error('consumer: set DOWNSTREAM_KEY (or --key) to a key from the gateway\'s DOWNSTREAM_API_KEYS');
  process.exit(64);
}
if (!Number.isInteger(settings.prefetch) || settings.prefetch < 1) {
  console.error('consumer: PREFETCH must be a positive integer');
  process.exit(64);
}

/** Names from the contract (section 3); the gateway declares them the same way. */
const CREATED = 'tickets.created';
const EVENTS = 'tickets.events';
const QUORUM = { durable: true, arguments: { 'x-queue-type': 'quorum' } };

/**
 * Message ids already handled, oldest first. Bounded: a redelivery comes soon
 * after the first delivery, so the most recent ids are the ones that matter.
 */
class Seen {
  private readonly ids = new Set<string>();
  constructor(
    private readonly max: number,
    private readonly file: string | null,
  ) {
    if (file && existsSync(file)) {
      for (const id of readFileSync(file, 'utf8').split('\n').slice(-max)) if (id) this.ids.add(id);
    }
  }
  has(id: string): boolean {
    return this.ids.has(id);
  }
  add(id: string): void {
    this.ids.add(id);
    if (this.ids.size > this.max) this.ids.delete(this.ids.values().next().value!);
    if (this.file) appendFileSync(this.file, `${id}\n`);
  }
}

const seen = new Seen(10_000, settings.seenFile);
const short = (s: unknown, n = 40) => {
  const t = String(s ?? '').replace(/\s+/g, ' ');
  return t.length > n ? `${t.slice(0, n)}…` : t;
};

/** Thrown for answers worth retrying later (gateway down, 429, 5xx): the message goes back to the queue. */
class RetryLater extends Error {}

async function reply(ticket: { id: string; number: string }): Promise<void> {
  let res: Response;
  try {
    res = await fetch(`${settings.gatewayUrl}/api/v1/tickets/${encodeURIComponent(ticket.id)}/replies`, {
      method: 'POST',
      headers: { authorization: `Bearer ${settings.key}`, 'content-type': 'application/json' },
      // One replyId per ticket: the gateway sends a replyId once, however often we post it.
      body: JSON.stringify({ replyId: 'first-answer', text: settings.replyText }),
    });
  } catch (err) {
    throw new RetryLater(`gateway unreachable: ${(err as Error).message}`);
  }
  if (res.status === 202 || res.status === 200) {
    console.log(`replied ${ticket.number} (${res.status === 202 ? 'new' : 'already sent'})`);
    return;
  }
  const body = await res.text();
  if (res.status === 429 || res.status >= 500) throw new RetryLater(`gateway answered ${res.status}: ${body}`);
  // 401/403/404 will not change by retrying: say so and move on.
  console.error(`reply to ${ticket.number} refused: ${res.status} ${body}`);
}

async function onTicket(m: ConsumeMessage): Promise<void> {
  const t = JSON.parse(m.content.toString('utf8')) as { id: string; number: string; channel: string; category: string; content: string; emergency: { service: string } | null };
  const urgent = t.emergency ? ` EMERGENCY ${t.emergency.service}` : '';
  console.log(`ticket ${t.number} ${t.channel}/${t.category}${urgent} id=${t.id} "${short(t.content)}"`);
  await reply(t);
}

async function onEvent(m: ConsumeMessage): Promise<void> {
  const e = JSON.parse(m.content.toString('utf8')) as { ticketId: string; number?: string };
  console.log(`event ${m.fields.routingKey} ${e.number ?? e.ticketId}`);
}

let inFlight = 0;
let stopping = false;

function consume(ch: Channel, queue: string, handle: (m: ConsumeMessage) => Promise<void>) {
  return ch.consume(
    queue,
    (m) => {
      if (!m) return; // the broker cancelled the consumer (queue deleted)
      inFlight++;
      void (async () => {
        // The gateway sets messageId on every message (ticket id or a stable event id).
        const id = m.properties.messageId as string | undefined;
        try {
          if (id && seen.has(id)) {
            console.log(`duplicate ${id} on ${queue}: skipped`);
          } else {
            await handle(m);
            if (id) seen.add(id);
          }
          ch.ack(m);
        } catch (err) {
          if (err instanceof RetryLater) {
            console.error(`retry later (${queue}): ${err.message}`);
            // Back to the queue after a pause, so a gateway that is down is not hammered.
            setTimeout(() => ch.nack(m, false, true), 2000);
          } else {
            // Unreadable body: requeueing would loop forever.
            console.error(`dropping unreadable message ${id ?? '?'} on ${queue}: ${(err as Error).message}`);
            ch.nack(m, false, false);
          }
        } finally {
          inFlight--;
        }
      })();
    },
    { noAck: false },
  );
}

const conn = await amqp.connect(settings.amqpUrl);
conn.on('error', (err: Error) => console.error(`broker connection error: ${err.message}`));
conn.on('close', () => {
  if (!stopping) {
    // A real system would reconnect; the example exits non-zero so a supervisor restarts it.
    console.error('broker connection closed');
    process.exit(75);
  }
});
const ch = await conn.createChannel();
// Idempotent, with the gateway's arguments: the consumer may start before the gateway.
await ch.assertQueue(CREATED, QUORUM);
await ch.assertQueue(EVENTS, QUORUM);
// At most this many unacknowledged messages per consumer: a slow gateway slows us, not the broker's memory.
await ch.prefetch(settings.prefetch);
const tags = [(await consume(ch, CREATED, onTicket)).consumerTag, (await consume(ch, EVENTS, onEvent)).consumerTag];
console.log(`consuming ${CREATED} and ${EVENTS} (prefetch ${settings.prefetch}); replies to ${settings.gatewayUrl}`);

async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  for (const t of tags) await ch.cancel(t).catch(() => {});
  // Let handlers that already started finish and ack.
  const until = Date.now() + 5000;
  while (inFlight > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  await ch.close().catch(() => {});
  await conn.close().catch(() => {});
  process.exit(0);
}
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
