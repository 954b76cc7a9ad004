import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { freePort, tempDir } from './gateway.js';
import { portOpen } from './rabbit.js';

const SERVER = '/usr/lib/rabbitmq/bin/rabbitmq-server';

/**
 * A private RabbitMQ node on its own port, name and data directory, for tests
 * that stop and start the broker: the shared node on 5672 is never touched.
 * Its Mnesia directory survives `stopNode()`/`startNode()`, so durable queues
 * and their messages come back like on a real restart.
 */
export class PrivateRabbit {
  private child: ChildProcess | null = null;
  private readonly dir = tempDir('rabbit-');
  readonly name = `gwtest${randomBytes(3).toString('hex')}@localhost`;
  private log = '';
  port = 0;

  static available(): boolean {
    return existsSync(SERVER);
  }

  get url(): string {
    return `amqp://guest:guest@127.0.0.1:${this.port}`;
  }

  async startNode(timeoutMs = 60_000): Promise<void> {
    if (this.child) return;
    if (!this.port) this.port = await freePort();
    const distPort = await freePort();
    mkdirSync(join(this.dir, 'log'), { recursive: true });
    writeFileSync(join(this.dir, 'rabbitmq.conf'), `listeners.tcp.default = 127.0.0.1:${this.port}\nloopback_users = none\n`);
    writeFileSync(join(this.dir, 'enabled_plugins'), '[].\n');
    this.log = '';
    // detached: the node gets its own process group, so stopping kills the script and beam.smp together.
    const child = spawn(SERVER, [], {
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
        HOME: process.env.HOME ?? '/root',
        RABBITMQ_NODENAME: this.name,
        RABBITMQ_NODE_PORT: String(this.port),
        RABBITMQ_DIST_PORT: String(distPort),
        RABBITMQ_MNESIA_BASE: join(this.dir, 'mnesia'),
        RABBITMQ_LOG_BASE: join(this.dir, 'log'),
        RABBITMQ_CONFIG_FILE: join(this.dir, 'rabbitmq.conf'),
        RABBITMQ_ENABLED_PLUGINS_FILE: join(this.dir, 'enabled_plugins'),
        RABBITMQ_PID_FILE: join(this.dir, 'pid'),
      },
    });
    child.stdout!.on('data', (d: Buffer) => (this.log += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (this.log += d.toString()));
    this.child = child;
    const until = Date.now() + timeoutMs;
    while (!(await portOpen(this.port))) {
      if (child.exitCode !== null || Date.now() > until) {
        await this.stopNode();
        throw new Error(`private RabbitMQ node did not start:\n${this.log.slice(-2000)}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** Stop the node (SIGTERM to its process group, SIGKILL after 15 s). */
  async stopNode(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = null;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    const kill = (s: NodeJS.Signals) => {
      try {
        process.kill(-child.pid!, s);
      } catch {
        // already gone
      }
    };
    kill(signal);
    const t = setTimeout(() => kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(t);
    // beam.smp may outlive the script by a moment; wait for the port to close.
    const until = Date.now() + 15_000;
    while ((await portOpen(this.port, '127.0.0.1', 200)) && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    if (await portOpen(this.port, '127.0.0.1', 200)) kill('SIGKILL');
  }

  async dispose(): Promise<void> {
    await this.stopNode();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
