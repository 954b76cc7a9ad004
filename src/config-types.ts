import { z } from 'zod';
import { parseDuration } from './duration.js';

/** Zod field helpers shared by the core and the channel config shapes. */

/** A duration setting: `90s`, `3m`, `24h`, `2d`, ISO 8601 `PT3M`, or a number of milliseconds. Parses to ms. */
export const duration = () =>
  z.union([z.string(), z.number()]).transform((v, ctx) => {
    const ms = typeof v === 'number' ? v : parseDuration(v);
    if (ms === null || !Number.isFinite(ms) || ms < 0) {
      ctx.addIssue({ code: 'custom', message: 'expected a duration such as 90s, 3m, 24h, 2d or PT3M' });
      return z.NEVER;
    }
    return ms;
  });

export const port = () => z.coerce.number().int().min(0).max(65535);
export const positiveInt = () => z.coerce.number().int().positive();
export const optionalString = () =>
  z
    .string()
    .optional()
    .transform((v) => (v === undefined || v.trim() === '' ? undefined : v));

/** A URL whose scheme must be one of `schemes`. Empty means "off". */
export const optionalUrl = (...schemes: string[]) =>
  optionalString().refine(
    (v) => {
      if (v === undefined) return true;
      try {
        return schemes.includes(new URL(v).protocol.replace(/:$/, ''));
      } catch {
        return false;
      }
    },
    { message: `expected a URL with scheme ${schemes.join(' or ')}` },
  );

export const boolean = () =>
  z.union([z.boolean(), z.enum(['true', 'false', '1', '0', 'yes', 'no'])]).transform((v) => v === true || v === 'true' || v === '1' || v === 'yes');
