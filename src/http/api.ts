import express from 'express';
import type { IntakeService } from '../intake.js';
import type { AttachmentFiles } from '../store/types.js';
import type { Ticket } from '../ticket.js';
import { GatewayError } from '../errors.js';
import { ReplyRequest } from '../publish/schemas.js';
import { forbidden, type ApiAccess, type ApiClient } from './auth.js';
import { jsonBody } from './body.js';
import { Slots } from './slots.js';

const TICKET_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Each download holds its whole file in memory (up to ATTACHMENT_MAX_BYTES) until sent, so
 * their number is bounded: 4 × 10 MB at once, 16 more waiting, the rest 429 with Retry-After.
 */
const DOWNLOADS_AT_ONCE = 4;
const DOWNLOADS_WAITING = 16;
const DOWNLOAD_SEND_MS = 60_000;

/**
 * Contract section 5: a downstream system may read any ticket; an intake client only
 * the tickets it created (`source.client` records the creating client of app and
 * Open311 tickets; other channels' tickets have no intake client).
 */
export function mayRead(client: ApiClient, t: Ticket): boolean {
  return client.role === 'downstream' || (t.channel === 'app' && t.source.client === client.name);
}

/**
 * Ticket lookups and replies for downstream systems and the app
 * (`/api/v1/tickets/:id…`, `/api/v1/attachments/:sha256`), all behind an API key
 * and the per-key rate.
 */
export function apiRouter(deps: { intake: IntakeService; attachments: AttachmentFiles; access: ApiAccess; jsonLimit: number }): express.Router {
  const r = express.Router();
  const auth = deps.access.auth();
  const downloads = new Slots(DOWNLOADS_AT_ONCE, DOWNLOADS_WAITING, 'attachment downloads');
  // Ticket ids are computable (they derive from the dedupe key), so another client's ticket
  // must be indistinguishable from none at all: the same error, the same body, never 403.
  const ticketOr404 = async (id: string, client: ApiClient) => {
    const t = TICKET_ID.test(id) ? await deps.intake.getTicket(id) : null;
    if (!t || !mayRead(client, t)) throw new GatewayError('NOT_FOUND', 'no such ticket');
    return t;
  };

  r.get('/tickets/:id', auth, async (req, res) => {
    res.json(await ticketOr404(String(req.params.id), req.apiClient!));
  });

  r.get('/tickets/:id/status', auth, async (req, res) => {
    const t = await ticketOr404(String(req.params.id), req.apiClient!);
    res.json(await deps.intake.ticketStatus(t.id));
  });

  r.get('/tickets/:id/replies', auth, async (req, res) => {
    const t = await ticketOr404(String(req.params.id), req.apiClient!);
    res.json((await deps.intake.ticketStatus(t.id))!.replies);
  });

  const replier: express.RequestHandler = (req, _res, next) => {
    // Checked before the ticket is looked up: the answer says nothing about the id.
    next(req.apiClient!.role === 'downstream' ? undefined : forbidden('post replies'));
  };

  r.post('/tickets/:id/replies', auth, replier, ...jsonBody(deps.jsonLimit), async (req, res) => {
    const t = await ticketOr404(String(req.params.id), req.apiClient!);
    const body = ReplyRequest.parse(req.body);
    const result = await deps.intake.addReply(t.id, body.replyId, body.text);
    res.status(result === 'created' ? 202 : 200).json({ ticketId: t.id, replyId: body.replyId, status: result === 'created' ? 'queued' : 'already-received' });
  });

  /**
   * Attachments are stored by content hash, so the hash alone says nothing about who
   * may see the file (and the same photo may belong to several tickets). Rather than a
   * table of (hash, ticket) pairs, the ticket's own attachment list is the record: an
   * intake client names the ticket (`?ticket=<id>`, which the URL in the ticket already
   * carries), and the file is served if that ticket is the client's and lists the hash.
   * Downstream systems may read any attachment, so the bare URL of older tickets keeps
   * working for them.
   */
  r.get('/attachments/:sha256', auth, async (req, res, next) => {
    const sha256 = String(req.params.sha256);
    const client = req.apiClient!;
    try {
      if (client.role !== 'downstream') {
        const ticketId = typeof req.query.ticket === 'string' ? req.query.ticket : '';
        const t = TICKET_ID.test(ticketId) ? await deps.intake.getTicket(ticketId) : null;
        if (!t || !mayRead(client, t) || !t.attachments.some((a) => a.sha256 === sha256)) {
          throw new GatewayError('NOT_FOUND', 'no such attachment');
        }
      }
      await downloads.run(async () => {
        const data = await deps.attachments.read(sha256);
        if (!data) throw new GatewayError('NOT_FOUND', 'no such attachment');
        // The slot is held until the file has left or the connection is gone; a reader too
        // slow to take it within DOWNLOAD_SEND_MS loses the connection, not everyone's slot.
        await new Promise<void>((resolve) => {
          const tooSlow = setTimeout(() => res.destroy(), DOWNLOAD_SEND_MS);
          res.once('close', () => {
            clearTimeout(tooSlow);
            resolve();
          });
          // Served as bytes, never as the type the citizen claimed: no upload can run as a page here.
          res.set({ 'Content-Type': 'application/octet-stream', 'X-Content-Type-Options': 'nosniff' }).send(data);
        });
      });
    } catch (err) {
      next(err);
    }
  });

  return r;
}
