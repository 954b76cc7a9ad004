import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { tempDir } from '../support/gateway.js';

const run = promisify(execFile);
const SOURCE = join(dirname(fileURLToPath(import.meta.url)), 'rofs.c');

/**
 * A directory that can be made read-only while a process keeps files open in it:
 * `rofs.c` (a FUSE passthrough with a switch) mounted over a temp dir. See the
 * comment at the top of rofs.c for why a plain `mount -o remount,ro` cannot do this.
 */
export interface ReadOnlySwitchDir {
  /** Where the gateway's DATA_DIR goes. */
  path: string;
  pid: number;
  setReadOnly(on: boolean): void;
  readonly readOnly: boolean;
  /** Unmount and stop the FUSE process (the caller has stopped every user of `path`). Idempotent. */
  dispose(): Promise<void>;
}

export type RofsResult = { ok: true; dir: ReadOnlySwitchDir } | { ok: false; reason: string };

async function haveFuseHeaders(): Promise<boolean> {
  try {
    await run('pkg-config', ['--exists', 'fuse3']);
    return true;
  } catch {
    return false;
  }
}

/** Build rofs once per source version (cached in the temp dir); installs libfuse3-dev when root and missing. */
async function buildRofs(): Promise<string> {
  const hash = createHash('sha256').update(readFileSync(SOURCE)).digest('hex').slice(0, 12);
  const bin = join(tmpdir(), `gateway-rofs-${hash}`);
  if (existsSync(bin)) return bin;
  if (!(await haveFuseHeaders())) {
    if (process.getuid?.() !== 0) throw new Error('libfuse3-dev is not installed (apt-get install -y libfuse3-dev fuse3)');
    // Same serialisation as every other Debian install on this machine.
    await run('flock', ['/tmp/apt.lock', 'apt-get', 'install', '-y', '-q', 'libfuse3-dev', 'fuse3'], { timeout: 180_000 }).catch((err: Error) => {
      throw new Error(`installing libfuse3-dev failed: ${err.message.split('\n')[0]}`);
    });
  }
  const flags = (await run('pkg-config', ['--cflags', '--libs', 'fuse3'])).stdout.trim().split(/\s+/);
  const tmp = `${bin}.${process.pid}`;
  await run('cc', ['-O2', '-Wall', '-o', tmp, SOURCE, ...flags]);
  await run('mv', ['-f', tmp, bin]);
  return bin;
}

async function isMounted(path: string): Promise<boolean> {
  const mounts = readFileSync('/proc/self/mounts', 'utf8');
  return mounts.split('\n').some((l) => l.split(' ')[1] === path);
}

/** Mount a read-only-switchable directory, or say in one line why it cannot be done here. */
export async function mountReadOnlySwitchDir(): Promise<RofsResult> {
  if (process.platform !== 'linux') return { ok: false, reason: 'needs Linux (FUSE)' };
  // Lets a developer run the suite without the FUSE helper (and check the skip path).
  if (process.env.FAULTS_NO_FUSE) return { ok: false, reason: 'FAULTS_NO_FUSE is set' };
  if (!existsSync('/dev/fuse')) return { ok: false, reason: '/dev/fuse is missing (no FUSE in this kernel or container)' };
  let bin: string;
  try {
    bin = await buildRofs();
  } catch (err) {
    return { ok: false, reason: `cannot build the FUSE helper: ${(err as Error).message}` };
  }
  const source = tempDir('rofs-src-');
  const mnt = tempDir('rofs-mnt-');
  let out = '';
  const child: ChildProcess = spawn(bin, [source, mnt], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const until = Date.now() + 10_000;
  while (!(await isMounted(mnt))) {
    if (child.exitCode !== null || Date.now() > until) {
      child.kill('SIGKILL');
      rmSync(source, { recursive: true, force: true });
      rmSync(mnt, { recursive: true, force: true });
      return { ok: false, reason: `FUSE mount refused (mounting not permitted here?): ${out.trim().split('\n').pop() ?? ''}` };
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  mkdirSync(join(mnt, 'data'), { recursive: true });
  let ro = false;
  let disposed: Promise<void> | null = null;
  const pid = child.pid!;
  // If the test process dies before dispose(), do not leave a mount behind.
  const onExit = (): void => {
    try {
      execFileSync('umount', ['-l', mnt], { stdio: 'ignore' });
    } catch {
      // not mounted any more
    }
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  };
  process.once('exit', onExit);
  return {
    ok: true,
    dir: {
      path: join(mnt, 'data'),
      pid,
      get readOnly() {
        return ro;
      },
      setReadOnly(on: boolean) {
        ro = on;
        process.kill(pid, on ? 'SIGUSR1' : 'SIGUSR2');
      },
      dispose() {
        disposed ??= (async () => {
          process.removeListener('exit', onExit);
          if (child.exitCode === null) {
            try {
              process.kill(pid, 'SIGUSR2');
            } catch {
              // already gone
            }
          }
          // A clean unmount makes the FUSE process exit by itself; lazy as a fallback.
          await run('umount', [mnt]).catch(() => run('umount', ['-l', mnt]).catch(() => {}));
          const t = setTimeout(() => child.kill('SIGKILL'), 5000);
          if (child.exitCode === null && child.signalCode === null) {
            child.kill('SIGTERM');
            await exited;
          }
          clearTimeout(t);
          if (await isMounted(mnt)) await run('umount', ['-l', mnt]).catch(() => {});
          rmSync(source, { recursive: true, force: true });
          rmSync(mnt, { recursive: true, force: true });
        })();
        return disposed;
      },
    },
  };
}
