import type { Logger } from 'pino';
import type { Request, Response, NextFunction } from 'express';
import type { Config } from '../../config.js';
import type { AdapterContext, ChannelAdapter, OutboundMessage, SendResult } from '../types.js';
import { AppTicketRequest, toInbound } from './parse.js';
import { authFailed, forbidden, type ApiClient } from '../../http/auth.js';
import { jsonBody } from '../../http/body.js';
import type { JsonAnswer } from '../../http/fast.js';
import { GatewayError } from '../../errors.js';
import { registerOpen311 } from './open311.js';

/**
 * The mobile app channel: `POST /api/v1/tickets` and Open311 GeoReport v2. The
 * HTTP answer itself is the receipt (it names the ticket number), so receipts
 * are passive; replies reach the app when it polls the ticket's status.
 */
export class AppAdapter implements ChannelAdapter {
  readonly channel = 'app' as const;
  readonly receiptMode = 'passive' as const;
  private stopped = false;

  constructor(private readonly config: Config) {}

  async start(ctx: AdapterContext): Promise<void> {
    const access = ctx.access;
    // Only intake clients create tickets: a downstream system answers citizens, it does not
    // speak for them, and a ticket it created would be owned by no intake client.
    const mayCreate = (client: ApiClient): string => {
      if (client.role !== 'intake') throw forbidden('create tickets');
      return client.name;
    };
    const creator = (req: Request, _res: Response, next: NextFunction) => {
      try {
        mayCreate(req.apiClient!);
      } catch (err) {
        return next(err);
      }
      next();
    };
    // Both ways in (Express below, the fast path after it) end here once the body is parsed.
    const submit = async (value: unknown, raw: Buffer, client: string): Promise<JsonAnswer> => {
      if (this.stopped) throw new GatewayError('SHUTTING_DOWN', 'gateway is shutting down');
      const body = AppTicketRequest.parse(value);
      const result = await ctx.intake.accept(toInbound(body, client, raw), { acknowledgedVia: 'http-response' });
      // 'query' cannot happen here (status queries are for the free-text channels) but shares the no-ticket answer.
      if (result.status === 'rejected' || result.status === 'query') {
        return { status: 422, body: { error: { code: 'EMPTY_CONTENT', message: result.receipt ?? 'no content', issues: [] } } };
      }
      const t = result.ticket;
      return { status: result.status === 'created' ? 202 : 200, body: { id: t.id, number: t.number, respondBy: t.deadline.respondBy } };
    };

    // Serves what the fast path leaves to Express: query strings, compressed bodies, other charsets, Expect.
    ctx.http.post('/api/v1/tickets', access.auth(), creator, ...jsonBody(this.config.HTTP_JSON_LIMIT), async (req, res) => {
      const a = await submit(req.body, req.rawBody ?? Buffer.from(JSON.stringify(req.body)), req.apiClient!.name);
      res.status(a.status).json(a.body);
    });
    ctx.fast.json('POST', '/api/v1/tickets', {
      limit: this.config.HTTP_JSON_LIMIT,
      admit: (req, res) => {
        const client = access.fromBearer(req.headers.authorization);
        if (!client) throw authFailed();
        access.checkRate(client, res);
        return mayCreate(client);
      },
      handle: submit,
    });

    registerOpen311(ctx, () => this.stopped);
  }

  async send(_msg: OutboundMessage): Promise<SendResult> {
    // The app fetches replies from GET /api/v1/tickets/:id/status; storing the row was the delivery.
    return { via: 'app-poll', upstreamId: null };
  }

  async stop(): Promise<void> {
    this.stopped = true;
  }
}

export function createAppAdapter(config: Config, logger: Logger): ChannelAdapter | null {
  if (config.APP_API_KEYS.size === 0) logger.info('app channel: no APP_API_KEYS configured; the app API answers 401');
  return new AppAdapter(config);
}
