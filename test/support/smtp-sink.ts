import { SMTPServer, type SMTPServerSession } from 'smtp-server';
import { simpleParser, type ParsedMail } from 'mailparser';

/**
 * A real SMTP server (smtp-server) on 127.0.0.1, port 0, that keeps every mail it
 * receives. Failures can be injected (`failNext`) to exercise 4xx/5xx handling.
 */

export interface CapturedMail {
  from: string | null;
  to: string[];
  raw: Buffer;
  parsed: ParsedMail;
  /** Header value by lowercased name (first occurrence, unfolded). */
  header(name: string): string | null;
}

export interface SmtpSink {
  port: number;
  /** `smtp://user:pass@127.0.0.1:port` */
  url: string;
  mails: CapturedMail[];
  /** Reject the next `count` DATA commands with this SMTP reply code and text. */
  failNext(code: number, message: string, count?: number): void;
  waitFor(predicate: (m: CapturedMail) => boolean, timeoutMs?: number): Promise<CapturedMail>;
  waitForCount(n: number, timeoutMs?: number): Promise<CapturedMail[]>;
  stop(): Promise<void>;
}

function headerOf(raw: Buffer, name: string): string | null {
  const end = raw.indexOf('\r\n\r\n');
  const head = raw.subarray(0, end < 0 ? raw.length : end).toString('latin1').replace(/\r\n[ \t]+/g, ' ');
  for (const line of head.split('\r\n')) {
    const i = line.indexOf(':');
    if (i > 0 && line.slice(0, i).trim().toLowerCase() === name.toLowerCase()) return line.slice(i + 1).trim();
  }
  return null;
}

export async function startSmtpSink(opts: { user?: string; password?: string } = {}): Promise<SmtpSink> {
  const user = opts.user ?? 'gateway';
  const password = opts.password ?? 'smtp-secret';
  const mails: CapturedMail[] = [];
  const waiters = new Set<() => void>();
  const failures: { code: number; message: string }[] = [];

  const server = new SMTPServer({
    secure: false,
    disabledCommands: ['STARTTLS'],
    authOptional: true,
    allowInsecureAuth: true,
    logger: false,
    size: 50 * 1024 * 1024,
    onAuth(auth, _session, cb) {
      if (auth.username === user && auth.password === password) cb(null, { user: auth.username });
      else cb(Object.assign(new Error('Invalid username or password'), { responseCode: 535 }));
    },
    onData(stream, session: SMTPServerSession, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const failure = failures.shift();
        if (failure) {
          cb(Object.assign(new Error(failure.message), { responseCode: failure.code }));
          return;
        }
        const raw = Buffer.concat(chunks);
        simpleParser(raw)
          .then((parsed) => {
            const from = session.envelope.mailFrom ? session.envelope.mailFrom.address : null;
            mails.push({
              from,
              to: session.envelope.rcptTo.map((r) => r.address),
              raw,
              parsed,
              header: (name) => headerOf(raw, name),
            });
            for (const w of [...waiters]) w();
            cb();
          })
          .catch((err: unknown) => cb(err as Error));
      });
    },
  });
  server.on('error', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const addr = server.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  let stopped = false;

  const waitFor = (predicate: (m: CapturedMail) => boolean, timeoutMs = 10_000): Promise<CapturedMail> =>
    new Promise((resolve, reject) => {
      const check = (): boolean => {
        const m = mails.find(predicate);
        if (!m) return false;
        clearTimeout(timer);
        waiters.delete(check);
        resolve(m);
        return true;
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`no matching mail at the SMTP sink within ${timeoutMs} ms (${mails.length} received)`));
      }, timeoutMs);
      if (!check()) waiters.add(check);
    });

  return {
    port,
    url: `smtp://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${port}`,
    mails,
    failNext(code, message, count = 1) {
      for (let i = 0; i < count; i++) failures.push({ code, message });
    },
    waitFor,
    async waitForCount(n, timeoutMs = 10_000) {
      await waitFor(() => mails.length >= n, timeoutMs);
      return mails.slice(0, n);
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
