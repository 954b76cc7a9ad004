/** Entries kept: enough for the last burst of trouble, small enough to send every second. */
export const RECENT_ERRORS = 50;
/** A longer line is cut: one huge stack or payload must not make the page heavy. */
const MAX_LINE = 2000;
const WARN = 40;

export interface RecentError {
  time: string;
  level: 'warn' | 'error' | 'fatal';
  msg: string;
  /** The line's other fields (channel, code, err, …), JSON, cut to MAX_LINE. */
  detail: string;
}

/**
 * The last warn/error/fatal log lines, as written: it is fed the serialized line
 * after pino's formatters and hooks ran, so it holds exactly what the log holds,
 * masked the same way, and nothing the log does not.
 */
export class RecentErrors {
  private readonly lines: string[] = [];

  /** Takes a serialized pino line; keeps it when its level is warn or above. */
  add(line: string): void {
    const m = /^\{"level":(\d+)/.exec(line);
    if (!m || Number(m[1]) < WARN) return;
    this.lines.push(line.length > MAX_LINE ? line.slice(0, MAX_LINE) : line);
    if (this.lines.length > RECENT_ERRORS) this.lines.shift();
  }

  /** Newest first. */
  list(): RecentError[] {
    const out: RecentError[] = [];
    for (let i = this.lines.length - 1; i >= 0; i--) out.push(parseLine(this.lines[i]!));
    return out;
  }
}

function parseLine(line: string): RecentError {
  try {
    const { level, time, msg, service: _service, pid: _pid, hostname: _host, ...rest } = JSON.parse(line) as Record<string, unknown>;
    const n = Number(level);
    return {
      time: String(time ?? ''),
      level: n >= 60 ? 'fatal' : n >= 50 ? 'error' : 'warn',
      msg: String(msg ?? ''),
      detail: Object.keys(rest).length ? JSON.stringify(rest).slice(0, MAX_LINE) : '',
    };
  } catch {
    // A line cut at MAX_LINE is no longer JSON: shown as it is (it is already masked).
    return { time: '', level: 'warn', msg: line, detail: '' };
  }
}
