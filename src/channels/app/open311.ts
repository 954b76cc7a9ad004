import express, { type Request, type Response } from 'express';
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import type { AdapterContext, Inbound } from '../types.js';
import { CATEGORIES, type Ticket } from '../../ticket.js';
import { normalizePhone } from '../../normalize/phone.js';
import type { IntakeService } from '../../intake.js';
import type { ApiClient } from '../../http/auth.js';

/**
 * Open311 GeoReport v2 (frozen spec, wiki.open311.org/GeoReport_v2), JSON format.
 * POST bodies are form-encoded, `api_key` is a form field or query parameter,
 * every answer is an array, and errors are `[{code, description}]` with the
 * HTTP status. Service codes are the hotline's categories.
 */

const SERVICE_NAMES: Record<string, string> = {
  consultation: '咨询 Consultation',
  help: '求助 Help',
  complaint: '投诉 Complaint',
  report: '举报 Report',
  suggestion: '建议 Suggestion',
  praise: '表扬 Praise',
  unknown: '其他 Other',
};

// "An optional argument that is empty must be treated as absent."
const opt = (max: number) =>
  z
    .string()
    .max(max)
    .optional()
    .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()));
const optNumber = (min: number, max: number) =>
  opt(40)
    .transform((v) => (v === undefined ? undefined : Number(v)))
    .pipe(z.number().min(min).max(max).optional());

const CreateRequest = z
  .object({
    service_code: z.enum(CATEGORIES),
    lat: optNumber(-90, 90),
    long: optNumber(-180, 180),
    address_string: opt(500),
    address_id: opt(200),
    email: opt(320),
    device_id: opt(200),
    account_id: opt(200),
    first_name: opt(100),
    last_name: opt(100),
    phone: opt(40),
    description: opt(4000),
    media_url: opt(2000),
  })
  .refine((r) => (r.lat !== undefined && r.long !== undefined) || r.address_string || r.address_id, {
    message: 'a location is required: lat and long, address_string or address_id',
  });

function errors(res: Response, status: number, description: string, code = status): void {
  res.status(status).json([{ code, description }]);
}

function requestView(t: Ticket, state: { responded: boolean }) {
  // The service the citizen chose wins over the text classifier's category.
  const chosen = (t.source.open311 as { service_code?: string } | undefined)?.service_code;
  const serviceCode = chosen && chosen in SERVICE_NAMES ? chosen : t.category;
  return {
    service_request_id: t.number,
    status: state.responded ? 'closed' : 'open',
    status_notes: null,
    service_name: SERVICE_NAMES[serviceCode] ?? serviceCode,
    service_code: serviceCode,
    description: t.content,
    agency_responsible: null,
    service_notice: null,
    requested_datetime: t.receivedAt,
    updated_datetime: t.receivedAt,
    expected_datetime: t.deadline.respondBy,
    address: t.location?.address ?? (t.source.open311 as { address_string?: string } | undefined)?.address_string ?? null,
    address_id: null,
    zipcode: null,
    lat: t.location?.lat ?? null,
    long: t.location?.lon ?? null,
    media_url: (t.source.open311 as { media_url?: string } | undefined)?.media_url ?? null,
  };
}

export function registerOpen311(ctx: AdapterContext, stopped: () => boolean): void {
  const r = express.Router();
  const intake = ctx.intake as IntakeService;
  const form = express.urlencoded({ extended: false, limit: ctx.config.HTTP_JSON_LIMIT, parameterLimit: 100 });

  const access = ctx.access;
  /**
   * The caller by `api_key`, counted against APP_RATE_LIMIT (reads included); null after
   * the 403 or 429 answer is written.
   */
  const caller = (req: Request, res: Response, action: string): ApiClient | null => {
    const raw = (req.body?.api_key as unknown) ?? req.query.api_key;
    const c = access.identify(typeof raw === 'string' ? raw : undefined);
    if (!c) {
      errors(res, 403, `Invalid api_key received -- can't proceed with ${action}.`);
      return null;
    }
    const wait = access.wait(c);
    if (wait !== null) {
      res.setHeader('Retry-After', String(wait));
      errors(res, 429, 'rate limit exceeded');
      return null;
    }
    return c;
  };
  // Contract section 5: an intake client sees only the requests it created; a downstream system sees any.
  const visible = (c: ApiClient, t: Ticket | null): t is Ticket =>
    t !== null && (c.role === 'downstream' || (t.channel === 'app' && t.source.client === c.name));

  r.get('/discovery.json', (_req, res) => {
    res.json({
      changeset: '2026-11-23T00:00:00Z',
      contact: '12345 hotline',
      key_service: 'API keys are issued by the hotline operator',
      endpoints: [{ specification: 'http://wiki.open311.org/GeoReport_v2', url: '/open311/v2', changeset: '2026-11-23T00:00:00Z', type: 'production', formats: ['application/json'] }],
    });
  });

  r.get('/services.json', (_req, res) => {
    res.json(
      CATEGORIES.map((c) => ({
        service_code: c,
        service_name: SERVICE_NAMES[c],
        description: SERVICE_NAMES[c],
        metadata: false,
        type: 'realtime',
        keywords: c,
        group: '12345',
      })),
    );
  });

  r.post('/requests.json', form, async (req, res) => {
    if (stopped()) return errors(res, 503, 'shutting down');
    if (!req.is('application/x-www-form-urlencoded')) return errors(res, 415, 'POST body must be application/x-www-form-urlencoded');
    const c = caller(req, res, 'create_request');
    if (!c) return;
    // As on the app API: downstream systems answer citizens, they do not file requests for them.
    if (c.role !== 'intake') return errors(res, 403, 'this api_key may not create requests');
    const name = c.name;
    const parsed = CreateRequest.safeParse(req.body ?? {});
    if (!parsed.success) {
      const missingService = parsed.error.issues.some((i) => i.path[0] === 'service_code');
      return errors(res, missingService && req.body?.service_code ? 404 : 400, parsed.error.issues.map((i) => `${i.path.join('.') || 'request'}: ${i.message}`).join('; '));
    }
    const p = parsed.data;
    const phone = normalizePhone(p.phone);
    const fullName = [p.last_name, p.first_name].filter(Boolean).join('') || null;
    // GeoReport v2 has no idempotency key: every POST is a new request.
    const requestId = randomUUID();
    const inbound: Inbound = {
      channel: 'app',
      dedupeKey: `open311:${name}:${requestId}`,
      channelMessageIds: [requestId],
      sentAt: null,
      citizen: { channelUserId: p.account_id ?? p.device_id ?? phone ?? p.email ?? `${name}:anonymous`, phone, email: p.email?.toLowerCase() ?? null, name: fullName },
      subject: null,
      content: p.description ?? '',
      attachments: [],
      location: p.lat !== undefined && p.long !== undefined ? { lat: p.lat, lon: p.long, address: p.address_string ?? null } : null,
      incomplete: false,
      source: { client: name, open311: { service_code: p.service_code, address_string: p.address_string ?? null, address_id: p.address_id ?? null, device_id: p.device_id ?? null, account_id: p.account_id ?? null, media_url: p.media_url ?? null } },
      raw: new URLSearchParams(Object.entries(req.body as Record<string, string>).filter(([k]) => k !== 'api_key')).toString(),
    };
    if (!inbound.content && p.media_url) inbound.content = p.media_url;
    const result = await intake.accept(inbound, { acknowledgedVia: 'http-response' });
    if (result.status === 'rejected') return errors(res, 400, 'description or media_url is required');
    res.status(201).json([{ service_request_id: result.ticket.number, service_notice: result.receipt, account_id: null }]);
  });

  const view = async (t: Ticket) => requestView(t, { responded: (await intake.ticketStatus(t.id))?.state === 'responded' });

  r.get('/requests.json', async (req, res) => {
    const c = caller(req, res, 'get_service_requests');
    if (!c) return;
    const ids = typeof req.query.service_request_id === 'string' ? req.query.service_request_id.split(',').map((s) => s.trim()).filter(Boolean).slice(0, 1000) : [];
    if (ids.length === 0) return errors(res, 400, 'service_request_id is required (listing by date is not offered)');
    const found: Ticket[] = [];
    for (const n of ids) {
      const t = await intake.getTicketByNumber(n);
      if (t && visible(c, t)) found.push(t);
    }
    res.json(await Promise.all(found.map(view)));
  });

  r.get('/requests/:id.json', async (req, res) => {
    const c = caller(req, res, 'get_service_request');
    if (!c) return;
    const t = await intake.getTicketByNumber(String(req.params.id));
    // Another client's request answers exactly as one that does not exist.
    if (!visible(c, t)) return errors(res, 404, 'service_request_id not found');
    res.json([await view(t)]);
  });

  ctx.http.use('/open311/v2', r);
}
