/**
 * Durations in configuration: `90s`, `3m`, `24h`, `2d`, `500ms`, or ISO 8601 (`PT3M`, `P1DT2H`).
 * Returns milliseconds, or null when the text is not a duration.
 */
export function parseDuration(text: string): number | null {
  const s = text.trim();
  const simple = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(s);
  if (simple) {
    const n = Number(simple[1]);
    const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[simple[2] as 'ms' | 's' | 'm' | 'h' | 'd'];
    return Math.round(n * unit);
  }
  const iso = /^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$/i.exec(s);
  if (iso && s.toUpperCase() !== 'P' && !/T$/i.test(s)) {
    const [, d, h, m, sec] = iso;
    return Math.round(((Number(d ?? 0) * 24 + Number(h ?? 0)) * 60 + Number(m ?? 0)) * 60_000 + Number(sec ?? 0) * 1000);
  }
  return null;
}

/** Milliseconds as an ISO 8601 duration, e.g. 180000 → `PT3M`, 86400000 → `PT24H`. */
export function isoDuration(ms: number): string {
  if (ms <= 0) return 'PT0S';
  let rest = ms;
  const h = Math.floor(rest / 3_600_000);
  rest -= h * 3_600_000;
  const m = Math.floor(rest / 60_000);
  rest -= m * 60_000;
  const s = rest / 1000;
  return `PT${h ? `${h}H` : ''}${m ? `${m}M` : ''}${s ? `${Number(s.toFixed(3))}S` : ''}`;
}
