import type { Logger } from 'pino';
import type { Request, Response, NextFunction } from 'express';
import type { Config } from '../../config.js';
import type { AdapterContext, ChannelAdapter, OutboundMessage, SendResult } from '../types.js';
import { AppTicketRequest, toInbound } from './parse.js';
import { bearerAuth, keyLookup, rateLimiter } from '../../http/auth.js';
import { jsonBody } from '../../http/body.js';
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
    const lookup = keyLookup(this.config.APP_API_KEYS);
    const limit = rateLimiter(this.config.APP_RATE_LIMIT, () => ctx.clock.now());
    const auth = bearerAuth(lookup);
    const rate = (req: Request, res: Response, next: NextFunction) => {
      const wait = limit(req.client!);
      if (wait !== null) {
        res.setHeader('Retry-After', String(wait));
        return next(new GatewayError('RATE_LIMITED', 'too many requests for this API key'));
      }
      next();
    };

    ctx.http.post('/api/v1/tickets', auth, rate, ...jsonBody(this.config.HTTP_JSON_LIMIT), async (req, res) => {
      if (this.stopped) throw new GatewayError('SHUTTING_DOWN', 'gateway is shutting down');
      const body = AppTicketRequest.parse(req.body);
      const inbound = toInbound(body, req.client!, req.rawBody ?? Buffer.from(JSON.stringify(req.body)));
      const result = await ctx.intake.accept(inbound, { acknowledgedVia: 'http-response' });
      if (result.status === 'rejected') {
        res.status(422).json({ error: { code: 'EMPTY_CONTENT', message: result.receipt ?? 'no content', issues: [] } });
        return;
      }
      const t = result.ticket;
      res.status(result.status === 'created' ? 202 : 200).json({ id: t.id, number: t.number, respondBy: t.deadline.respondBy });
    });

    registerOpen311(ctx, lookup, limit, () => this.stopped);
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
