import { z } from 'zod';
import { CATEGORIES, CHANNELS, TicketV1 } from '../ticket.js';
import { BINDINGS, EXCHANGE, QUEUES, UNROUTED_EXCHANGE } from './topology.js';
import {
  DeadlineEvent,
  IntakeRejected,
  MessageHeaders,
  ReplyFailedHeaders,
  RejectedHeaders,
  ReplyFailed,
  ReplyMessage,
  TicketAcknowledged,
  TicketFollowup,
  TicketResponded,
} from './schemas.js';

/**
 * The AsyncAPI 3.0 description of the gateway's RabbitMQ side (contract section 3),
 * served at /asyncapi.json. Names come from topology.ts, payloads and headers from
 * the zod schemas the code builds its messages with, and each queue's messages are
 * found by matching its binding patterns, so the document follows the code instead
 * of restating it.
 */

const AMQP = '0.3.0';

// draft-07: the AsyncAPI 3.0 default schema format is a superset of it.
function jsonSchema(schema: z.ZodType, io: 'input' | 'output' = 'output'): Record<string, unknown> {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { target: 'draft-7', io }) as Record<string, unknown>;
  return rest;
}

type SchemaName = 'TicketV1' | 'MessageHeaders' | 'ReplyFailedHeaders' | 'RejectedHeaders' | 'TicketAcknowledged' | 'DeadlineEvent' | 'TicketResponded' | 'TicketFollowup' | 'IntakeRejected' | 'ReplyFailed' | 'ReplyMessage';

function schemas(): Record<SchemaName, Record<string, unknown>> {
  return {
    TicketV1: jsonSchema(TicketV1),
    MessageHeaders: jsonSchema(MessageHeaders),
    ReplyFailedHeaders: jsonSchema(ReplyFailedHeaders),
    RejectedHeaders: jsonSchema(RejectedHeaders),
    TicketAcknowledged: jsonSchema(TicketAcknowledged),
    DeadlineEvent: jsonSchema(DeadlineEvent),
    TicketResponded: jsonSchema(TicketResponded),
    TicketFollowup: jsonSchema(TicketFollowup),
    IntakeRejected: jsonSchema(IntakeRejected),
    ReplyFailed: jsonSchema(ReplyFailed),
    // What the gateway accepts: extra fields are ignored, so input mode (no additionalProperties: false).
    ReplyMessage: jsonSchema(ReplyMessage, 'input'),
  };
}

interface Published {
  /** Id of the channel, its message and its operation. */
  id: string;
  /** Routing key with `{channel}` / `{category}` parameters. */
  address: string;
  title: string;
  description: string;
  payload: SchemaName;
  headers: SchemaName;
  messageId: string;
}

const PUBLISHED: Published[] = [
  {
    id: 'ticketCreated',
    address: 'ticket.created.{channel}.{category}',
    title: 'Ticket created',
    description: 'A citizen message became a ticket (schema v1, also at /schema/ticket.v1.json).',
    payload: 'TicketV1',
    headers: 'MessageHeaders',
    messageId: 'the ticket id',
  },
  {
    id: 'ticketAcknowledged',
    address: 'ticket.acknowledged.{channel}',
    title: 'Receipt sent',
    description: 'The citizen was sent a receipt naming the ticket number.',
    payload: 'TicketAcknowledged',
    headers: 'MessageHeaders',
    messageId: 'stable event id derived from the ticket id',
  },
  {
    id: 'ticketDeadlineWarning',
    address: 'ticket.deadline.warning.{channel}',
    title: 'Deadline warning',
    description: 'DEADLINE_WARNING_RATIO of the response deadline passed without a reply. Skipped when the breach is also overdue.',
    payload: 'DeadlineEvent',
    headers: 'MessageHeaders',
    messageId: 'stable event id derived from the ticket id',
  },
  {
    id: 'ticketDeadlineBreached',
    address: 'ticket.deadline.breached.{channel}',
    title: 'Deadline breached',
    description: 'The response deadline passed without a reply. Fires once, also after a restart.',
    payload: 'DeadlineEvent',
    headers: 'MessageHeaders',
    messageId: 'stable event id derived from the ticket id',
  },
  {
    id: 'ticketResponded',
    address: 'ticket.responded.{channel}',
    title: 'Reply sent',
    description: 'A reply went to the citizen over the ticket’s channel. The first one meets the deadline.',
    payload: 'TicketResponded',
    headers: 'MessageHeaders',
    messageId: 'stable event id derived from the ticket id and replyId',
  },
  {
    id: 'ticketFollowup',
    address: 'ticket.followup.{channel}',
    title: 'Citizen wrote again',
    description: 'A new message from the citizen on an open ticket (a reply to the receipt, or one naming the ticket number).',
    payload: 'TicketFollowup',
    headers: 'MessageHeaders',
    messageId: 'stable event id derived from the ticket id and the upstream message',
  },
  {
    id: 'intakeRejected',
    address: 'intake.rejected.{channel}',
    title: 'Input rejected',
    description: 'Input that could not become a ticket, with the raw input.',
    payload: 'IntakeRejected',
    headers: 'RejectedHeaders',
    messageId: 'a unique id per rejection',
  },
  {
    id: 'replyFailed',
    address: 'reply.failed.{channel}',
    title: 'Reply failed',
    description:
      'A receipt, reply or notice failed for good, or a message on tickets.replies was refused (invalid, or no such ticket: then the channel is `unknown` and the headers carry no ticket facts).',
    payload: 'ReplyFailed',
    headers: 'ReplyFailedHeaders',
    messageId: 'stable id derived from the ticket id and replyId',
  },
];

/** Does a concrete routing key match an AMQP topic pattern (`*` one word, `#` zero or more)? */
export function topicMatches(pattern: string, key: string): boolean {
  const match = (p: string[], k: string[]): boolean => {
    if (p.length === 0) return k.length === 0;
    const [head, ...rest] = p;
    if (head === '#') return match(rest, k) || (k.length > 0 && match(p, k.slice(1)));
    return k.length > 0 && (head === '*' || head === k[0]) && match(rest, k.slice(1));
  };
  return match(pattern.split('.'), key.split('.'));
}

const sampleKey = (address: string) => address.replace(/\{[^}]+\}/g, 'x');

function parameters(address: string, replyChannel: boolean): Record<string, unknown> | undefined {
  const out: Record<string, unknown> = {};
  if (address.includes('{channel}')) {
    out.channel = {
      description: replyChannel ? 'The ticket’s channel; `unknown` for a refused message from tickets.replies' : 'The channel the citizen used',
      enum: replyChannel ? [...CHANNELS, 'unknown'] : [...CHANNELS],
    };
  }
  if (address.includes('{category}')) out.category = { description: 'The ticket’s category', enum: [...CATEGORIES] };
  return Object.keys(out).length ? out : undefined;
}

const ref = ($ref: string) => ({ $ref });

let cached: Record<string, unknown> | undefined;

export function asyncapiDocument(): Record<string, unknown> {
  cached ??= build();
  return cached;
}

function build(): Record<string, unknown> {
  const exchangeBinding = {
    amqp: {
      is: 'routingKey',
      exchange: { name: EXCHANGE, type: 'topic', durable: true, autoDelete: false },
      'x-arguments': { 'alternate-exchange': UNROUTED_EXCHANGE },
      bindingVersion: AMQP,
    },
  };
  const queueBinding = (name: string) => ({
    amqp: {
      is: 'queue',
      queue: { name, durable: true, exclusive: false, autoDelete: false },
      'x-arguments': { 'x-queue-type': 'quorum' },
      'x-bindings': BINDINGS.filter(([q]) => q === name).map(([, pattern]) => ({ exchange: EXCHANGE, routingKey: pattern })),
      bindingVersion: AMQP,
    },
  });

  const messages: Record<string, unknown> = {};
  const channels: Record<string, unknown> = {};
  const operations: Record<string, unknown> = {};

  for (const p of PUBLISHED) {
    const type = p.address.split('.').slice(0, 2).join('.');
    messages[p.id] = {
      name: type,
      title: p.title,
      summary: p.description,
      contentType: 'application/json',
      headers: ref(`#/components/schemas/${p.headers}`),
      payload: ref(`#/components/schemas/${p.payload}`),
      bindings: {
        amqp: {
          contentEncoding: 'utf-8',
          messageType: type,
          // The binding has no field for these AMQP properties; consumers dedupe on messageId.
          'x-properties': {
            messageId: p.messageId,
            type,
            timestamp: 'seconds since the epoch when the message was journaled',
            deliveryMode: 2,
            contentType: 'application/json',
          },
          bindingVersion: AMQP,
        },
      },
    };
    const params = parameters(p.address, p.id === 'replyFailed');
    channels[p.id] = {
      address: p.address,
      title: p.title,
      description: `Routing key on the \`${EXCHANGE}\` topic exchange. ${p.description}`,
      ...(params ? { parameters: params } : {}),
      messages: { [p.id]: ref(`#/components/messages/${p.id}`) },
      bindings: exchangeBinding,
    };
    operations[`publish${p.id[0]!.toUpperCase()}${p.id.slice(1)}`] = {
      action: 'send',
      title: `Publish ${type}`,
      description: 'From the journal, with publisher confirms: a nack or a return is retried, never dropped. At-least-once: dedupe on messageId.',
      channel: ref(`#/channels/${p.id}`),
      messages: [ref(`#/channels/${p.id}/messages/${p.id}`)],
      bindings: { amqp: { deliveryMode: 2, mandatory: true, timestamp: true, bindingVersion: AMQP } },
    };
  }

  const queueDescriptions: Record<string, string> = {
    [QUEUES.created]: 'Every ticket.',
    [QUEUES.events]: 'Receipts, deadline warnings and breaches, replies sent, follow-ups.',
    [QUEUES.rejected]: 'Input that could not become a ticket.',
    [QUEUES.repliesFailed]: 'Receipts, replies and notices that failed for good, and refused replies.',
  };
  const queueId = (name: string) => `queue${name.split('.').map((w) => w[0]!.toUpperCase() + w.slice(1)).join('')}`;
  for (const [name, description] of Object.entries(queueDescriptions)) {
    const routed = PUBLISHED.filter((p) => BINDINGS.some(([q, pattern]) => q === name && topicMatches(pattern, sampleKey(p.address))));
    channels[queueId(name)] = {
      address: name,
      title: `Queue ${name}`,
      description: `Quorum queue declared by the gateway. ${description}`,
      messages: Object.fromEntries(routed.map((p) => [p.id, ref(`#/components/messages/${p.id}`)])),
      bindings: queueBinding(name),
    };
  }
  const everything = Object.fromEntries(PUBLISHED.map((p) => [p.id, ref(`#/components/messages/${p.id}`)]));
  channels.unroutedExchange = {
    address: null,
    title: `Exchange ${UNROUTED_EXCHANGE}`,
    description: `Fanout alternate exchange of \`${EXCHANGE}\`: whatever no binding routes lands here (and in queue ${QUEUES.unrouted}) instead of being dropped.`,
    messages: everything,
    bindings: { amqp: { is: 'routingKey', exchange: { name: UNROUTED_EXCHANGE, type: 'fanout', durable: true, autoDelete: false }, bindingVersion: AMQP } },
  };
  channels[queueId(QUEUES.unrouted)] = {
    address: QUEUES.unrouted,
    title: `Queue ${QUEUES.unrouted}`,
    description: `Quorum queue bound to \`${UNROUTED_EXCHANGE}\`: messages whose routing key matched no binding. Should stay empty.`,
    messages: everything,
    bindings: {
      amqp: {
        is: 'queue',
        queue: { name: QUEUES.unrouted, durable: true, exclusive: false, autoDelete: false },
        'x-arguments': { 'x-queue-type': 'quorum' },
        'x-bindings': [{ exchange: UNROUTED_EXCHANGE, routingKey: '' }],
        bindingVersion: AMQP,
      },
    },
  };

  messages.replyMessage = {
    name: 'reply',
    title: 'Reply to a citizen',
    summary:
      'Published by downstream to the queue (default exchange). Sent over the ticket’s own channel, then ticket.responded; a repeated replyId is not sent again. Invalid, or naming no ticket: reply.failed.unknown.',
    contentType: 'application/json',
    payload: ref('#/components/schemas/ReplyMessage'),
  };
  channels[queueId(QUEUES.replies)] = {
    address: QUEUES.replies,
    title: `Queue ${QUEUES.replies}`,
    description: 'Quorum queue declared by the gateway; the same as POST /api/v1/tickets/{id}/replies.',
    messages: { replyMessage: ref('#/components/messages/replyMessage') },
    bindings: {
      amqp: {
        is: 'queue',
        queue: { name: QUEUES.replies, durable: true, exclusive: false, autoDelete: false },
        'x-arguments': { 'x-queue-type': 'quorum' },
        bindingVersion: AMQP,
      },
    },
  };
  operations.consumeReply = {
    action: 'receive',
    title: 'Consume replies',
    description: 'Acked once the reply is stored; requeued after a pause when the store cannot take it.',
    channel: ref(`#/channels/${queueId(QUEUES.replies)}`),
    messages: [ref(`#/channels/${queueId(QUEUES.replies)}/messages/replyMessage`)],
    bindings: { amqp: { ack: true, bindingVersion: AMQP } },
  };

  return {
    asyncapi: '3.0.0',
    info: {
      title: '12345 intake gateway',
      // The contract's version (ticket schemaVersion 1), not the package's.
      version: '1.0.0',
      description:
        'Everything the gateway publishes to RabbitMQ and the replies it consumes. Every message is persistent JSON with messageId, type, timestamp and the headers in MessageHeaders.',
    },
    defaultContentType: 'application/json',
    servers: {
      broker: {
        // Not the configured AMQP_URL: this document is public, the broker address is not.
        host: '{host}',
        protocol: 'amqp',
        protocolVersion: '0.9.1',
        description: 'The RabbitMQ broker in AMQP_URL (vhost from its path).',
        variables: { host: { default: '127.0.0.1:5672', description: 'host:port of AMQP_URL' } },
      },
    },
    channels,
    operations,
    components: { schemas: schemas(), messages },
  };
}
