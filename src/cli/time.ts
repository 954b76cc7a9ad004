import { parseDuration } from '../duration.js';
import { GatewayError } from '../errors.js';

/**
 * A point in time on the command line: ISO 8601 (`2026-12-01T08:00:00+08:00`,
 * `2026-12-01`), or a duration back from `now` (`2h`, `3d`, `90m`, `PT30M`).
 */
export function parseTime(text: string, now: number, option: string): number {
  const t = text.trim();
  if (/^\d{4}-\d{2}-\d{2}/.test(t)) {
    const ms = Date.parse(t);
    if (Number.isFinite(ms)) return ms;
  } else {
    const back = parseDuration(t);
    if (back !== null) return now - back;
  }
  throw new GatewayError('INPUT_INVALID', `${option} ${JSON.stringify(text)}: expected an ISO 8601 time (2026-12-01T08:00:00+08:00) or a duration back from now (2h, 3d)`);
}
