/**
 * Every error the gateway raises on purpose carries a code. Whether it is
 * `transient` decides what happens next: transient errors are retried (the
 * upstream is told "try again", a reply is re-sent later), permanent ones end
 * up on `intake.rejected` or `reply.failed` with the code and the vendor's
 * own answer in `detail`.
 */
export type ErrorCode =
  | 'CONFIG_INVALID'
  | 'STORE_UNAVAILABLE'
  | 'STORE_CLOSED'
  | 'BROKER_UNAVAILABLE'
  | 'INPUT_INVALID'
  | 'INPUT_TOO_LARGE'
  | 'INPUT_UNSUPPORTED'
  | 'AUTH_FAILED'
  | 'FORBIDDEN'
  | 'NOT_FOUND'
  | 'RATE_LIMITED'
  | 'REPLY_LIMIT'
  | 'SHUTTING_DOWN'
  | 'CHANNEL_OFF'
  | 'SEND_TRANSIENT'
  | 'SEND_PERMANENT'
  | 'VENDOR_ERROR'
  | 'TIMEOUT';

export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly transient: boolean;
  /** The vendor's or peer's own answer (status, body, errcode), kept verbatim for operators. */
  readonly detail: unknown;

  constructor(code: ErrorCode, message: string, opts: { transient?: boolean; detail?: unknown; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'GatewayError';
    this.code = code;
    this.transient = opts.transient ?? DEFAULT_TRANSIENT.has(code);
    this.detail = opts.detail;
  }
}

const DEFAULT_TRANSIENT = new Set<ErrorCode>([
  'STORE_UNAVAILABLE',
  'BROKER_UNAVAILABLE',
  'SHUTTING_DOWN',
  'SEND_TRANSIENT',
  'TIMEOUT',
  'RATE_LIMITED',
]);

/** Unknown errors (a thrown TypeError, a socket reset) are treated as transient: retrying is safe, dropping is not. */
export function isTransient(err: unknown): boolean {
  return err instanceof GatewayError ? err.transient : true;
}

export function errorCode(err: unknown): string {
  if (err instanceof GatewayError) return err.code;
  if (err && typeof err === 'object' && 'code' in err && typeof (err as { code: unknown }).code === 'string') {
    return (err as { code: string }).code;
  }
  return 'INTERNAL';
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Validate untrusted input with a zod schema; a mismatch is a permanent
 * INPUT_INVALID whose detail lists the issues (it ends up on intake.rejected).
 */
export function parseOrReject<T>(schema: { safeParse(v: unknown): { success: true; data: T } | { success: false; error: { issues: { path: PropertyKey[]; message: string }[] } } }, value: unknown, message: string): T {
  const r = schema.safeParse(value);
  if (!r.success) {
    throw new GatewayError('INPUT_INVALID', message, {
      transient: false,
      detail: r.error.issues.map((i) => `${i.path.map(String).join('.')}: ${i.message}`),
    });
  }
  return r.data;
}
