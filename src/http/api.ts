import express from 'express';
import { z } from 'zod';
import type { IntakeService } from '../intake.js';
import type { AttachmentStore } from '../store/attachments.js';
import { GatewayError } from '../errors.js';
import { bearerAuth } from './auth.js';
import { jsonBody } from './body.js';

export const ReplyRequest = z.object({
  replyId: z.string().trim().min(1).max(200),
  text: z.string().trim().min(1).max(4000),
});

const TICKET_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Ticket lookups and replies for downstream systems and the app
 * (`/api/v1/tickets/:id…`, `/api/v1/attachments/:sha256`), all behind an API key.
 */
export function apiRouter(deps: {
  intake: IntakeService;
  attachments: AttachmentStore;
  lookup: (k: string | undefined) => string | null;
  jsonLimit: number;
}): express.Router {
  const r = express.Router();
  const auth = bearerAuth(deps.lookup);
  const ticketOr404 = async (id: string) => {
    const t = TICKET_ID.test(id) ? await deps.intake.getTicket(id) : null;
    if (!t) throw new GatewayError('NOT_FOUND', 'no such ticket');
    return t;
  };

  r.get('/tickets/:id', auth, async (req, res) => {
    res.json(await ticketOr404(String(req.params.id)));
  });

  r.get('/tickets/:id/status', auth, async (req, res) => {
    const t = await ticketOr404(String(req.params.id));
    res.json(await deps.intake.ticketStatus(t.id));
  });

  r.get('/tickets/:id/replies', auth, async (req, res) => {
    const t = await ticketOr404(String(req.params.id));
    res.json((await deps.intake.ticketStatus(t.id))!.replies);
  });

  r.post('/tickets/:id/replies', auth, ...jsonBody(deps.jsonLimit), async (req, res) => {
    const t = await ticketOr404(String(req.params.id));
    const body = ReplyRequest.parse(req.body);
    const result = await deps.intake.addReply(t.id, body.replyId, body.text);
    if (result === 'full') throw new GatewayError('RATE_LIMITED', 'this ticket takes no more replies');
    res.status(result === 'created' ? 202 : 200).json({ ticketId: t.id, replyId: body.replyId, status: result === 'created' ? 'queued' : 'already-received' });
  });

  r.get('/attachments/:sha256', auth, (req, res, next) => {
    let path: string;
    try {
      path = deps.attachments.path(String(req.params.sha256));
    } catch (err) {
      return next(err);
    }
    res.sendFile(path, { headers: { 'Content-Type': 'application/octet-stream', 'X-Content-Type-Options': 'nosniff' } }, (err) => {
      if (err && !res.headersSent) next(new GatewayError('NOT_FOUND', 'no such attachment'));
    });
  });

  return r;
}
