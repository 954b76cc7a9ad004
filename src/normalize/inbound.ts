import type { Inbound, InboundAttachment } from '../channels/types.js';
import type { Location } from '../ticket.js';
import { cleanId, cleanLine, cleanText, stripUnsafe, truncate } from './text.js';

/** Longest content a ticket carries, in UTF-16 units. */
export const MAX_CONTENT = 20_000;

function cleanSource(value: unknown): unknown {
  if (typeof value === 'string') return stripUnsafe(value);
  if (Array.isArray(value)) return value.map(cleanSource);
  // Plain objects only: a Date or Buffer among the facts is serialised as it is, not text a citizen wrote.
  if (value !== null && typeof value === 'object' && [Object.prototype, null].includes(Object.getPrototypeOf(value))) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[stripUnsafe(k)] = cleanSource(v);
    return out;
  }
  return value;
}

function cleanAttachment(a: InboundAttachment): InboundAttachment {
  // A file name is shown to case workers and used in downloads: one line, and never empty.
  return { ...a, fileName: cleanLine(a.fileName) || 'attachment', mimeType: cleanId(a.mimeType) };
}

function cleanLocation(l: Location | null): Location | null {
  return l && { ...l, address: l.address === null ? null : cleanText(l.address) || null };
}

/**
 * The one cleanup every channel's message goes through before it becomes a ticket
 * (contract section 5, "Text"): content and addresses cleaned, subject, name and
 * file names on one line, ids with forbidden characters replaced, channel facts
 * stripped of them. `dedupeKey`, `threadRefs` and `raw` stay as the channel made
 * them: they are looked up, never shown, and cleaning them could merge two
 * different upstream messages into one ticket.
 */
export function cleanInbound(msg: Inbound): Inbound {
  const c = msg.citizen;
  return {
    ...msg,
    channelMessageIds: msg.channelMessageIds.map(cleanId),
    citizen: {
      channelUserId: cleanId(c.channelUserId),
      phone: c.phone === null ? null : cleanId(c.phone),
      email: c.email === null ? null : cleanId(c.email),
      name: c.name === null ? null : cleanLine(c.name) || null,
    },
    subject: msg.subject === null ? null : cleanLine(msg.subject) || null,
    // A cut can end on a blank that cleaning would trim: trimmed here, so cleaning a ticket's text again changes nothing.
    content: truncate(cleanText(msg.content ?? ''), MAX_CONTENT).trimEnd(),
    attachments: msg.attachments.map(cleanAttachment),
    location: cleanLocation(msg.location),
    source: cleanSource(msg.source) as Record<string, unknown>,
  };
}
