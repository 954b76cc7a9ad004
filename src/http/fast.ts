import { createHash } from 'node:crypto';
import type { IncomingMessage, IncomingHttpHeaders, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { GatewayError } from '../errors.js';
import type { Metrics } from '../metrics.js';
import { BODY_NOT_JSON, BODY_NOT_JSON_TYPE, BODY_TOO_LARGE, describeError, errorBody, noteFailure } from './errors.js';

/**
 * Answers the request itself and returns true, or returns false — synchronously,
 * before a byte of the body is read — to leave the request to Express.
 */
export type FastHandler = (req: IncomingMessage, res: ServerResponse) => boolean;

export interface JsonAnswer {
  status: number;
  body: unknown;
}

/** A JSON POST route served without Express, answering exactly as the Express route with `jsonBody()` does. */
export interface JsonRoute {
  /** Body limit in bytes, as given to `express.json`. */
  limit: number;
  /**
   * The caller's name; throws (a GatewayError) to refuse, before the body is read,
   * like the auth and rate middleware ahead of `jsonBody()`. May set `Retry-After`.
   */
  admit(req: IncomingMessage, res: ServerResponse): string;
  /** Everything after the body is parsed: the same function the Express route calls. */
  handle(value: unknown, raw: Buffer, client: string): Promise<JsonAnswer>;
}

/**
 * Routes answered ahead of Express, keyed by method and exact request target:
 * anything else, including the same path with a query string, is Express's.
 * Nothing is taken while the gateway closes, so Express's shutdown answer applies.
 */
export class FastRoutes {
  private readonly routes = new Map<string, Map<string, FastHandler>>();

  constructor(
    readonly logger: Logger,
    readonly metrics: Metrics,
    private readonly closing: () => boolean = () => false,
  ) {}

  add(method: string, path: string, handler: FastHandler): void {
    let paths = this.routes.get(method);
    if (!paths) this.routes.set(method, (paths = new Map()));
    paths.set(path, handler);
  }

  json(method: string, path: string, route: JsonRoute): void {
    this.add(method, path, (req, res) => serveJson(this, route, req, res));
  }

  handle(req: IncomingMessage, res: ServerResponse): boolean {
    const handler = this.routes.get(req.method!)?.get(req.url!);
    return handler !== undefined && !this.closing() && handler(req, res);
  }

  /** Answers an error as Express's error handler does: same status, body, Retry-After, log and metric. */
  fail(res: ServerResponse, err: unknown): void {
    const f = describeError(err);
    noteFailure(f, err, this.logger, this.metrics);
    if (res.headersSent) return;
    writeJson(res, f.status, errorBody(f.code, f.message, f.issues), f.retry && !res.hasHeader('Retry-After') ? '1' : undefined);
  }
}

const JSON_CONTENT_TYPE = 'application/json; charset=utf-8';

/**
 * What `res.status(status).json(body)` sends: the same headers (Express's default
 * weak ETag included) and bytes.
 */
export function writeJson(res: ServerResponse, status: number, body: unknown, retryAfter?: string): void {
  const buf = Buffer.from(JSON.stringify(body), 'utf8');
  const etag = `W/"${buf.length.toString(16)}-${createHash('sha1').update(buf).digest('base64').substring(0, 27)}"`;
  res
    .writeHead(
      status,
      retryAfter === undefined
        ? { 'Content-Type': JSON_CONTENT_TYPE, 'Content-Length': buf.length, ETag: etag }
        : { 'Retry-After': retryAfter, 'Content-Type': JSON_CONTENT_TYPE, 'Content-Length': buf.length, ETag: etag },
    )
    .end(buf);
}

// Content-Type as `req.is('application/json')` reads it (content-type@2, type-is@2): the
// media type is what precedes the first ';', trimmed of spaces and tabs only, any case.
const JSON_MEDIA_TYPE = /^[ \t]*application\/json[ \t]*(?:;|$)/i;
// The forms body-parser decodes as UTF-8. Other parameters (another charset, a repeated,
// empty or oddly quoted one) are left to Express, which answers 415 or decodes them.
const JSON_UTF8 = /^[ \t]*application\/json[ \t]*(?:;[ \t]*charset[ \t]*=[ \t]*(?:utf-8|"utf-8")[ \t]*)?$/i;

const TYPE_JSON = 0;
const TYPE_OTHER = 1;
const TYPE_UNUSUAL = 2;

function contentType(value: string | undefined): number {
  if (value === 'application/json' || value === 'application/json; charset=utf-8') return TYPE_JSON;
  if (value === undefined || !JSON_MEDIA_TYPE.test(value)) return TYPE_OTHER;
  return JSON_UTF8.test(value) ? TYPE_JSON : TYPE_UNUSUAL;
}

/** type-is `hasBody`: without either header Node reads no body and `req.is` answers null. */
function hasBody(h: IncomingHttpHeaders): boolean {
  return h['transfer-encoding'] !== undefined || !Number.isNaN(Number(h['content-length']));
}

function serveJson(routes: FastRoutes, route: JsonRoute, req: IncomingMessage, res: ServerResponse): boolean {
  const h = req.headers;
  // Node has already answered 100 Continue by now; such clients are rare enough to leave to Express.
  if (h.expect !== undefined) return false;
  // body-parser inflates gzip, deflate, br and answers 415 for other codings.
  const encoding = h['content-encoding'];
  if (encoding !== undefined && encoding !== '' && encoding.toLowerCase() !== 'identity') return false;
  // Chunked is read here; transfer codings stacked on it are not.
  const transfer = h['transfer-encoding'];
  if (transfer !== undefined && transfer.toLowerCase() !== 'chunked') return false;
  const type = contentType(h['content-type']);
  if (type === TYPE_UNUSUAL) return false;

  // The Express route's order: key and rate limit, then the type, then the body.
  let client: string;
  try {
    client = route.admit(req, res);
  } catch (err) {
    routes.fail(res, err);
    return true;
  }
  if (type !== TYPE_JSON || !hasBody(h)) {
    routes.fail(res, new GatewayError('INPUT_UNSUPPORTED', BODY_NOT_JSON_TYPE));
    return true;
  }

  const length = h['content-length'];
  const read = new BodyRead(routes, route, res, client, length !== undefined && Number(length) > route.limit);
  (req as Reading)[READ] = read;
  req.on('data', onData);
  req.on('end', onEnd);
  req.on('error', onError);
  return true;
}

const READ = Symbol('fast.body');
type Reading = IncomingMessage & { [READ]?: BodyRead };

class BodyRead {
  chunks: Buffer[] = [];
  received = 0;
  settled = false;

  constructor(
    readonly routes: FastRoutes,
    readonly route: JsonRoute,
    readonly res: ServerResponse,
    readonly client: string,
    /** Over the limit: the rest is read and dropped, and 413 answered at the end, as raw-body does. */
    public tooLarge: boolean,
  ) {}
}

// Listeners shared by every request: their state rides on the request.
function onData(this: Reading, chunk: Buffer): void {
  const r = this[READ]!;
  r.received += chunk.length;
  if (r.tooLarge) return;
  if (r.received > r.route.limit) {
    r.tooLarge = true;
    r.chunks = [];
    return;
  }
  r.chunks.push(chunk);
}

function onEnd(this: Reading): void {
  const r = this[READ]!;
  if (r.settled) return;
  r.settled = true;
  if (r.tooLarge) return r.routes.fail(r.res, new GatewayError('INPUT_TOO_LARGE', BODY_TOO_LARGE));
  const raw = r.chunks.length === 1 ? r.chunks[0]! : Buffer.concat(r.chunks, r.received);
  r.chunks = [];
  let value: unknown;
  try {
    value = parseJson(raw);
  } catch {
    return r.routes.fail(r.res, new GatewayError('INPUT_INVALID', BODY_NOT_JSON));
  }
  void answer(r, value, raw);
}

/** The client went away mid-body: counted as the 400 body-parser reports, though nobody reads it. */
function onError(this: Reading): void {
  const r = this[READ];
  if (!r || r.settled) return;
  r.settled = true;
  r.chunks = [];
  r.routes.fail(r.res, new GatewayError('INPUT_INVALID', 'bad request'));
}

async function answer(r: BodyRead, value: unknown, raw: Buffer): Promise<void> {
  try {
    const a = await r.route.handle(value, raw, r.client);
    writeJson(r.res, a.status, a.body);
  } catch (err) {
    r.routes.fail(r.res, err);
  }
}

/**
 * `express.json()` with its defaults: a UTF-8 byte order mark is dropped, an empty
 * body is `{}`, and (strict) only an object or an array may stand at the top level.
 */
export function parseJson(raw: Buffer): unknown {
  const text = raw.length >= 3 && raw[0] === 0xef && raw[1] === 0xbb && raw[2] === 0xbf ? raw.toString('utf8', 3) : raw.toString('utf8');
  if (text.length === 0) return {};
  let i = 0;
  let c = text.charCodeAt(0);
  // JSON whitespace only (RFC 8259): what JSON.parse skips too.
  while (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) c = text.charCodeAt(++i);
  if (c !== 0x7b && c !== 0x5b) throw new SyntaxError('top level is not an object or an array');
  return JSON.parse(text);
}
