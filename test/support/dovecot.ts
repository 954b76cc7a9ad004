import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ImapFlow } from 'imapflow';

/**
 * A private Dovecot IMAP server for tests: its own config, base_dir, maildir and
 * passwd-file in a temp dir, listening on 127.0.0.1 only, no TLS. The system-wide
 * Dovecot (if any) is never touched. Stop it with `stop()` in `after()`.
 */

const run = promisify(execFile);

export const DOVECOT_BIN = '/usr/sbin/dovecot';
export const DOVEADM_BIN = '/usr/bin/doveadm';

export interface DovecotOptions {
  user?: string;
  password?: string;
  /** Hide IDLE from CAPABILITY, so clients must fall back to polling. */
  noIdle?: boolean;
}

export interface Dovecot {
  host: string;
  port: number;
  user: string;
  password: string;
  /** `imap://user:pass@127.0.0.1:port/INBOX` */
  url: string;
  dir: string;
  pid: number;
  /** APPEND one message (raw RFC 5322 bytes) to a mailbox; resolves with its UID. */
  append(raw: string | Buffer, mailbox?: string, flags?: string[]): Promise<number | undefined>;
  /** Flags of every message in the mailbox by UID. */
  flags(mailbox?: string): Promise<Map<number, Set<string>>>;
  /** Number of messages in the mailbox. */
  count(mailbox?: string): Promise<number>;
  /** Disconnect every IMAP session of the user (`doveadm kick`); false when nobody was connected. */
  kick(): Promise<boolean>;
  /** A fresh authenticated client (caller logs out). */
  client(): Promise<ImapFlow>;
  stop(): Promise<void>;
}

export function dovecotAvailable(): boolean {
  return existsSync(DOVECOT_BIN);
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

async function idOf(name: string): Promise<{ uid: number; gid: number } | null> {
  try {
    const uid = Number((await run('id', ['-u', name])).stdout.trim());
    const gid = Number((await run('id', ['-g', name])).stdout.trim());
    return Number.isInteger(uid) && Number.isInteger(gid) ? { uid, gid } : null;
  } catch {
    return null;
  }
}

function waitForPort(port: number, proc: ChildProcess, timeoutMs: number, logPath: string): Promise<void> {
  const until = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = (): void => {
      if (proc.exitCode !== null) {
        void readFile(logPath, 'utf8')
          .catch(() => '')
          .then((log) => reject(new Error(`dovecot exited with ${proc.exitCode}: ${log.slice(-2000)}`)));
        return;
      }
      const sock = createConnection({ host: '127.0.0.1', port });
      sock.once('data', (d) => {
        sock.destroy();
        if (d.toString().startsWith('* OK')) resolve();
        else reject(new Error(`unexpected greeting ${d.toString()}`));
      });
      sock.once('error', () => {
        sock.destroy();
        if (Date.now() > until) reject(new Error(`dovecot did not listen on ${port} within ${timeoutMs} ms`));
        else setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

/** Start a private Dovecot. Throws one clear line when Dovecot is not installed. */
export async function startDovecot(opts: DovecotOptions = {}): Promise<Dovecot> {
  if (!dovecotAvailable()) {
    throw new Error('Dovecot is not installed: apt-get install -y dovecot-imapd (or run scripts/ensure-services.mjs)');
  }
  const user = opts.user ?? 'citizen-mail';
  const password = opts.password ?? 'test-password';
  const dir = await mkdtemp(join(tmpdir(), 'dovecot-'));
  // Dovecot refuses to run mail processes as root, so mail belongs to the
  // packaged `dovecot` user when we are root; otherwise to ourselves.
  const isRoot = process.getuid?.() === 0;
  const mailOwner = isRoot ? await idOf('dovecot') : null;
  const uid = mailOwner?.uid ?? process.getuid?.() ?? 1000;
  const gid = mailOwner?.gid ?? process.getgid?.() ?? 1000;
  const home = join(dir, 'home');
  const runDir = join(dir, 'run');
  const stateDir = join(dir, 'state');
  for (const d of [home, runDir, stateDir]) await mkdir(d, { recursive: true });
  await chmod(dir, 0o755);
  if (isRoot) await chown(home, uid, gid);

  let lastErr: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const logPath = join(dir, 'dovecot.log');
    const conf = [
      `base_dir = ${runDir}`,
      `state_dir = ${stateDir}`,
      `instance_name = test-${port}`,
      `log_path = ${logPath}`,
      'protocols = imap',
      'listen = 127.0.0.1',
      'ssl = no',
      'disable_plaintext_auth = no',
      'auth_mechanisms = plain login',
      `first_valid_uid = ${Math.min(uid, 100)}`,
      `first_valid_gid = ${Math.min(gid, 100)}`,
      isRoot ? 'default_internal_user = dovecot' : `default_internal_user = ${process.env.USER ?? 'nobody'}`,
      isRoot ? 'default_login_user = dovenull' : `default_login_user = ${process.env.USER ?? 'nobody'}`,
      `mail_location = maildir:${home}/%u/Maildir`,
      // inotify tells IDLE sessions at once; the interval is the fallback.
      'mailbox_idle_check_interval = 1 secs',
      'mail_max_userip_connections = 100',
      opts.noIdle ? 'imap_capability = IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE UIDPLUS MOVE NAMESPACE' : '',
      'passdb {',
      '  driver = passwd-file',
      `  args = scheme=PLAIN username_format=%u ${join(dir, 'passwd')}`,
      '}',
      'userdb {',
      '  driver = static',
      `  args = uid=${uid} gid=${gid} home=${home}/%u`,
      '}',
      'service imap-login {',
      '  inet_listener imap {',
      '    address = 127.0.0.1',
      `    port = ${port}`,
      '  }',
      '  inet_listener imaps {',
      '    port = 0',
      '  }',
      '}',
      'service anvil {',
      '  chroot =',
      '}',
      'service imap-login {',
      '  chroot =',
      '}',
      'namespace inbox {',
      '  inbox = yes',
      '  separator = /',
      '}',
      '',
    ].join('\n');
    const confPath = join(dir, 'dovecot.conf');
    await writeFile(confPath, conf);
    await writeFile(join(dir, 'passwd'), `${user}:{PLAIN}${password}::::::\n`);
    await chmod(join(dir, 'passwd'), 0o644);

    const proc = spawn(DOVECOT_BIN, ['-F', '-c', confPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    proc.stderr?.on('data', (d: Buffer) => {
      if (stderr.length < 8192) stderr += d.toString();
    });
    proc.stdout?.resume();
    try {
      await waitForPort(port, proc, 10_000, logPath);
    } catch (err) {
      lastErr = new Error(`${(err as Error).message} ${stderr}`);
      if (proc.exitCode === null) proc.kill('SIGKILL');
      continue;
    }
    const pid = proc.pid!;
    let stopped = false;
    // If the test process dies without after() running, do not leave the server behind.
    const onExit = (): void => {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    };
    process.once('exit', onExit);
    const url = `imap://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${port}/INBOX`;

    const client = async (): Promise<ImapFlow> => {
      const c = new ImapFlow({ host: '127.0.0.1', port, secure: false, auth: { user, pass: password }, logger: false });
      c.on('error', () => undefined);
      await c.connect();
      return c;
    };
    const withClient = async <T>(fn: (c: ImapFlow) => Promise<T>): Promise<T> => {
      const c = await client();
      try {
        return await fn(c);
      } finally {
        await c.logout().catch(() => c.close());
      }
    };

    const dovecot: Dovecot = {
      host: '127.0.0.1',
      port,
      user,
      password,
      url,
      dir,
      pid,
      append: (raw, mailbox = 'INBOX', flags = []) =>
        withClient(async (c) => {
          const res = await c.append(mailbox, typeof raw === 'string' ? Buffer.from(raw, 'binary') : raw, flags);
          return res ? res.uid : undefined;
        }),
      flags: (mailbox = 'INBOX') =>
        withClient(async (c) => {
          const lock = await c.getMailboxLock(mailbox);
          const out = new Map<number, Set<string>>();
          try {
            if (c.mailbox && c.mailbox.exists > 0) {
              for await (const m of c.fetch('1:*', { uid: true, flags: true })) out.set(m.uid, m.flags ?? new Set());
            }
          } finally {
            lock.release();
          }
          return out;
        }),
      count: (mailbox = 'INBOX') =>
        withClient(async (c) => {
          const st = await c.status(mailbox, { messages: true });
          return st ? (st.messages ?? 0) : 0;
        }),
      kick: async () => {
        try {
          await run(DOVEADM_BIN, ['-c', confPath, 'kick', user]);
          return true;
        } catch (err) {
          // doveadm exits non-zero (68, EX_NOUSER) when no session matched.
          if ((err as { code?: unknown }).code === 68) return false;
          throw new Error(`doveadm kick failed: ${(err as Error).message}`);
        }
      },
      client,
      stop: async () => {
        if (stopped) return;
        stopped = true;
        process.removeListener('exit', onExit);
        if (proc.exitCode === null) {
          const exited = new Promise<void>((r) => proc.once('exit', () => r()));
          try {
            process.kill(pid, 'SIGTERM');
          } catch {
            /* already gone */
          }
          const timer = setTimeout(() => {
            try {
              process.kill(pid, 'SIGKILL');
            } catch {
              /* already gone */
            }
          }, 5000);
          await exited;
          clearTimeout(timer);
        }
        await rm(dir, { recursive: true, force: true });
      },
    };
    return dovecot;
  }
  await rm(dir, { recursive: true, force: true });
  throw lastErr instanceof Error ? lastErr : new Error(String(lastErr));
}
