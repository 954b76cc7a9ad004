import { z } from 'zod';
import type { Inbound } from '../types.js';
import { normalizePhone } from '../../normalize/phone.js';
import { isOneLine, wellFormed } from '../../normalize/text.js';

/** Body of `POST /api/v1/tickets` (contract section 4, "Mobile app"). */
export const AppTicketRequest = z.object({
  // The idempotency key is refused (400), not cleaned, when it holds a lone surrogate, a control or a
  // bidi override: cleaning maps many keys to one (`a\ud800` and `a\udbff` both to `a\ufffd`), so a
  // client's second message would be taken for a retry of the first and silently dropped.
  clientMessageId: z.string().trim().min(1).max(200).refine(isOneLine, 'expected one line of well-formed text without control or bidirectional formatting characters'),
  citizen: z
    .object({
      id: z.string().max(200).optional(),
      name: z.string().max(200).optional(),
      phone: z.string().max(40).optional(),
      email: z.string().email().max(320).optional(),
    })
    .default({}),
  content: z.string().max(20_000),
  subject: z.string().max(500).optional(),
  location: z
    .object({ lat: z.number().min(-90).max(90), lon: z.number().min(-180).max(180), address: z.string().max(500).optional() })
    .optional(),
  attachments: z
    .array(
      z.object({
        fileName: z.string().min(1).max(255),
        mimeType: z.string().min(1).max(255),
        dataBase64: z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, 'expected base64'),
      }),
    )
    .max(10)
    .default([]),
});
export type AppTicketRequest = z.infer<typeof AppTicketRequest>;

/** Pure: a validated app request from API client `client` → Inbound. */
export function toInbound(req: AppTicketRequest, client: string, raw: Buffer): Inbound {
  const phone = normalizePhone(req.citizen.phone);
  const email = req.citizen.email?.toLowerCase() ?? null;
  return {
    channel: 'app',
    // clientMessageId is unique per API key, so the key's name scopes it.
    dedupeKey: `${client}:${req.clientMessageId}`,
    channelMessageIds: [req.clientMessageId],
    sentAt: null,
    citizen: {
      channelUserId: req.citizen.id ?? phone ?? email ?? `${client}:anonymous`,
      phone,
      email,
      name: req.citizen.name === undefined ? null : wellFormed(req.citizen.name),
    },
    subject: req.subject === undefined ? null : wellFormed(req.subject),
    content: wellFormed(req.content),
    attachments: req.attachments.map((a) => ({ fileName: a.fileName, mimeType: a.mimeType, data: Buffer.from(a.dataBase64, 'base64') })),
    location: req.location ? { lat: req.location.lat, lon: req.location.lon, address: req.location.address ?? null } : null,
    incomplete: false,
    source: { client, clientMessageId: req.clientMessageId },
    raw,
  };
}
