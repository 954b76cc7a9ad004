import { z } from 'zod';
import { Attachment, Category, Channel } from '../ticket.js';
import { ReplyRequest } from '../http/api.js';

/**
 * Bodies and headers of everything on the `tickets` exchange besides the ticket
 * itself (contract section 3). messages.ts builds its bodies typed against these,
 * and /asyncapi.json publishes their JSON Schemas, so the document cannot drift
 * from what is sent. The gateway never parses its own events: these are for the
 * types and the document, not for run-time validation.
 */

const isoDate = z.string().datetime({ offset: true });
const ticketId = z.string().uuid();
const ticketNumber = z.string().regex(/^\d{8}-\d{6,}$/);

export const MessageHeaders = z
  .object({
    channel: Channel,
    category: Category,
    language: z.string().describe('BCP 47 tag of the content; `und` when there is no ticket'),
    emergency: z.boolean().describe('The ticket names an emergency service (110, 119, 120, 122)'),
    schemaVersion: z.literal(1),
  })
  .describe('AMQP headers on every message, so consumers can route and filter without parsing the body');
export type MessageHeaders = z.infer<typeof MessageHeaders>;

export const ReplyFailedHeaders = MessageHeaders.extend({
  channel: z.union([Channel, z.literal('unknown')]).describe('The ticket’s channel; `unknown` when the reply named no ticket the gateway knows'),
}).describe('Headers of reply.failed: the ticket’s facts, or "none" values when there is no such ticket');
export type ReplyFailedHeaders = z.infer<typeof ReplyFailedHeaders>;

export const RejectedHeaders = MessageHeaders.extend({
  category: z.literal('unknown'),
  language: z.literal('und'),
  emergency: z.literal(false),
  reason: z.string().describe('The same machine reason as the body'),
}).describe('Headers of intake.rejected: there is no ticket, so category and language carry their "none" values');
export type RejectedHeaders = z.infer<typeof RejectedHeaders>;

export const TicketAcknowledged = z
  .object({
    ticketId,
    number: ticketNumber,
    at: isoDate.describe('When the receipt went out'),
    via: z.string().describe('How the receipt reached the citizen: http-response, smpp, smtp, customer-service-api, reply-api, sendMessage, …'),
  })
  .describe('The citizen was sent a receipt naming the ticket number');
export type TicketAcknowledged = z.infer<typeof TicketAcknowledged>;

export const DeadlineEvent = z
  .object({
    ticketId,
    number: ticketNumber,
    respondBy: isoDate,
    at: isoDate.describe('When the event fired'),
  })
  .describe('A response deadline reached its warning point, or passed, without a reply');
export type DeadlineEvent = z.infer<typeof DeadlineEvent>;

export const TicketResponded = z
  .object({
    ticketId,
    number: ticketNumber,
    replyId: z.string(),
    at: isoDate.describe('When the reply was handed to the channel'),
    withinDeadline: z.boolean(),
    latencyMs: z.number().int().describe('From receivedAt to this reply'),
  })
  .describe('A reply was sent to the citizen over the ticket’s own channel');
export type TicketResponded = z.infer<typeof TicketResponded>;

export const TicketFollowup = z
  .object({
    ticketId,
    content: z.string().describe('Plain text, NFC, HTML and quoting stripped'),
    attachments: z.array(Attachment),
    at: isoDate,
  })
  .describe('The citizen wrote again on an open ticket');
export type TicketFollowup = z.infer<typeof TicketFollowup>;

export const IntakeRejected = z
  .object({
    channel: Channel,
    reason: z.string().describe('Machine reason: parse_error, empty, unsupported_type, too_large, auto_reply, bounce, …'),
    detail: z.string(),
    receivedAt: isoDate,
    raw: z.string().describe('The upstream input as received'),
    rawEncoding: z.enum(['utf8', 'base64']).describe('base64 when the input was not valid UTF-8'),
  })
  .describe('Input that could not become a ticket');
export type IntakeRejected = z.infer<typeof IntakeRejected>;

export const ReplyError = z.object({
  code: z.string(),
  message: z.string(),
  detail: z.unknown().optional().describe("The channel's own answer, when it gave one"),
  attempts: z.number().int().positive().optional().describe('Absent when the reply was refused before any attempt'),
});
export type ReplyError = z.infer<typeof ReplyError>;

export const ReplyFailed = z
  .object({
    // Not a uuid: a refused reply from tickets.replies carries whatever ticketId it named.
    ticketId: z.string().nullable().describe('Null when the reply named no ticket'),
    replyId: z.string(),
    error: ReplyError,
  })
  .describe('A reply, receipt or notice could not be delivered, or a reply from tickets.replies was refused');
export type ReplyFailed = z.infer<typeof ReplyFailed>;

/** What downstream publishes to the `tickets.replies` queue (the same fields as the HTTP reply, plus the ticket). */
export const ReplyMessage = ReplyRequest.extend({ ticketId: z.string().min(1) }).describe('A reply to send to the citizen');
export type ReplyMessage = z.infer<typeof ReplyMessage>;
