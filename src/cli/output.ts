import { isSecretKey, redactConfigMessage, type Config } from '../config.js';
import { redactValues } from '../redact.js';

/**
 * Everything the command line prints goes through here: no line may carry a
 * secret of the configuration (tokens, keys, passwords, credentials in URLs).
 * Diagnostics (doctor, errors) are also masked by shape, since a peer's message
 * may quote a URL; records (a ticket's JSON) only by the configured secret values,
 * so a citizen's text is shown as written.
 */
export class Output {
  constructor(
    private readonly config: Config | null,
    private readonly out: (text: string) => void = (t) => process.stdout.write(t),
    private readonly err: (text: string) => void = (t) => process.stderr.write(t),
  ) {}

  /** A diagnostic line: credentials hidden by shape and every configured secret hidden. */
  line(text: string): void {
    this.out(`${this.mask(text)}\n`);
  }

  /** A record (ticket JSON, a table of its rows): configured secret values hidden. */
  record(text: string): void {
    this.out(`${this.config ? redactValues(text, configSecrets(this.config)) : text}\n`);
  }

  error(text: string): void {
    this.err(`intake-gateway: ${this.mask(text)}\n`);
  }

  mask(text: string): string {
    return this.config ? redactConfigMessage(text, this.config) : redactConfigMessage(text);
  }
}

/** The secret values of a parsed configuration: secret settings by name, and the keys of the API key lists. */
function configSecrets(config: Config): string[] {
  const out: string[] = [];
  for (const [key, v] of Object.entries(config)) {
    if (isSecretKey(key) && typeof v === 'string') out.push(v);
    if (v instanceof Map) for (const k of v.keys()) if (typeof k === 'string') out.push(k);
  }
  return out;
}

/** `ok  ` / `FAIL` / `skip` + the check's name, in columns. */
export function checkLine(status: 'ok' | 'FAIL' | 'skip', name: string, detail: string): string {
  return `${status.padEnd(4)} ${name.padEnd(10)} ${detail}`;
}

export function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

/** `3 s`, `4 min`, `2 h 5 min`, `3 d 2 h`: an age as an operator reads it. */
export function age(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 120) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}
