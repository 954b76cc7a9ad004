import { pino, type Logger, type DestinationStream } from 'pino';

// Phone numbers and e-mail addresses never reach the logs in clear: citizens'
// contact data is personal information, and logs travel further than the store.
const PHONE = /(?<!\d)(\+?86)?(1[3-9]\d)(\d{4})(\d{4})(?!\d)/g;
const EMAIL = /([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})/g;

export function maskPII(text: string): string {
  return text.replace(PHONE, (_m, cc: string | undefined, a: string, _b: string, c: string) => `${cc ?? ''}${a}****${c}`).replace(EMAIL, '$1***@$2');
}

function maskDeep(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return maskPII(value);
  if (depth > 4 || value === null || typeof value !== 'object') return value;
  if (value instanceof Error) return { type: value.name, message: maskPII(value.message), code: (value as { code?: unknown }).code };
  if (Array.isArray(value)) return value.map((v) => maskDeep(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = maskDeep(v, depth + 1);
  return out;
}

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'intake-gateway' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { log: (obj) => maskDeep(obj) as Record<string, unknown> },
      hooks: {
        logMethod(args, method) {
          // Mask the message string too, not only the merged object.
          const masked = args.map((a) => (typeof a === 'string' ? maskPII(a) : a)) as Parameters<typeof method>;
          method.apply(this, masked);
        },
      },
    },
    destination,
  );
}
