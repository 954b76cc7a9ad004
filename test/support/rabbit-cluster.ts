import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { freePort, tempDir } from './gateway.js';
import { portOpen } from './rabbit.js';

const run = promisify(execFile);
const SERVER = '/usr/lib/rabbitmq/bin/rabbitmq-server';
// The unwrapped CLI: /usr/sbin/rabbitmqctl switches to the rabbitmq user and its
// home, so it would present the shared node's cookie instead of this cluster's.
const CTL = '/usr/lib/rabbitmq/bin/rabbitmqctl';

interface Node {
  name: string;
  port: number;
  distPort: number;
  dir: string;
  child: ChildProcess | null;
  log: string;
}

/**
 * A RabbitMQ cluster of private nodes on this machine (default three), for
 * tests that stop the node a gateway is connected to. Every node has its own
 * name, AMQP port, distribution port (the shared node already holds
 * 25672 = 5672 + 20000, the default), Mnesia and log directories; all share
 * one Erlang cookie through a private HOME. Nodes 2.. join node 1 with
 * `stop_app; join_cluster; start_app`. The shared node on 5672 is never touched.
 *
 * Queues the gateway declares are quorum queues, replicated on every node that
 * is a member when they are declared: declare them only after `start()`.
 */
export class RabbitCluster {
  readonly dir = tempDir('rabbit-cluster-');
  private readonly home = join(this.dir, 'home');
  readonly nodes: Node[] = [];

  static available(): boolean {
    return existsSync(SERVER) && existsSync(CTL);
  }

  private constructor() {
    mkdirSync(this.home, { recursive: true });
    const cookie = join(this.home, '.erlang.cookie');
    writeFileSync(cookie, randomBytes(16).toString('hex').toUpperCase());
    // Erlang refuses a cookie file others can read.
    chmodSync(cookie, 0o400);
  }

  static async start(size = 3, timeoutMs = 90_000): Promise<RabbitCluster> {
    const c = new RabbitCluster();
    try {
      const tag = randomBytes(3).toString('hex');
      for (let i = 0; i < size; i++) {
        const dir = join(c.dir, `n${i}`);
        mkdirSync(join(dir, 'log'), { recursive: true });
        c.nodes.push({ name: `gwcl${tag}n${i}@localhost`, port: await freePort(), distPort: await freePort(), dir, child: null, log: '' });
      }
      await Promise.all(c.nodes.map((_, i) => c.startNode(i, timeoutMs)));
      for (let i = 1; i < size; i++) {
        const n = c.nodes[i]!.name;
        await c.ctl(['-n', n, 'stop_app']);
        await c.ctl(['-n', n, 'join_cluster', c.nodes[0]!.name]);
        await c.ctl(['-n', n, 'start_app']);
      }
      const status = await c.ctl(['-n', c.nodes[0]!.name, 'cluster_status', '--formatter', 'json']);
      const running = (JSON.parse(status) as { running_nodes: string[] }).running_nodes;
      if (running.length !== size) throw new Error(`cluster formed with ${running.length} of ${size} nodes: ${status}`);
      return c;
    } catch (err) {
      await c.destroy();
      throw err;
    }
  }

  /** One AMQP URL per node (default vhost; the cluster belongs to one test). */
  get urls(): string[] {
    return this.nodes.map((n) => `amqp://guest:guest@127.0.0.1:${n.port}`);
  }

  /** rabbitmqctl with this cluster's cookie. */
  async ctl(args: string[], timeoutMs = 60_000): Promise<string> {
    const { stdout } = await run(CTL, ['-q', ...args], {
      timeout: timeoutMs,
      env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', HOME: this.home },
    });
    return stdout;
  }

  async startNode(i: number, timeoutMs = 60_000): Promise<void> {
    const n = this.nodes[i]!;
    if (n.child) return;
    writeFileSync(join(n.dir, 'rabbitmq.conf'), `listeners.tcp.default = 127.0.0.1:${n.port}\nloopback_users = none\n`);
    writeFileSync(join(n.dir, 'enabled_plugins'), '[].\n');
    n.log = '';
    // detached: its own process group, so stopping ends the script and beam.smp together.
    const child = spawn(SERVER, [], {
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
        HOME: this.home,
        RABBITMQ_NODENAME: n.name,
        RABBITMQ_NODE_PORT: String(n.port),
        RABBITMQ_DIST_PORT: String(n.distPort),
        RABBITMQ_MNESIA_BASE: join(n.dir, 'mnesia'),
        RABBITMQ_LOG_BASE: join(n.dir, 'log'),
        RABBITMQ_CONFIG_FILE: join(n.dir, 'rabbitmq.conf'),
        RABBITMQ_ENABLED_PLUGINS_FILE: join(n.dir, 'enabled_plugins'),
        RABBITMQ_PID_FILE: join(n.dir, 'pid'),
      },
    });
    child.stdout!.on('data', (d: Buffer) => (n.log = (n.log + d.toString()).slice(-20_000)));
    child.stderr!.on('data', (d: Buffer) => (n.log = (n.log + d.toString()).slice(-20_000)));
    n.child = child;
    const until = Date.now() + timeoutMs;
    while (!(await portOpen(n.port))) {
      if (child.exitCode !== null || Date.now() > until) {
        const log = n.log;
        await this.stopNode(i, 'SIGKILL');
        throw new Error(`RabbitMQ cluster node ${n.name} did not start:\n${log.slice(-2000)}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /**
   * Stop one node: SIGTERM (a clean shutdown that closes client connections)
   * or SIGKILL (a crash), to the node's process group; SIGKILL after 15 s.
   */
  async stopNode(i: number, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const n = this.nodes[i]!;
    const child = n.child;
    if (!child) return;
    n.child = null;
    const kill = (s: NodeJS.Signals) => {
      try {
        process.kill(-child.pid!, s);
      } catch {
        // already gone
      }
    };
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      kill(signal);
      const t = setTimeout(() => kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(t);
    }
    // beam.smp may outlive the script by a moment.
    const until = Date.now() + 15_000;
    while ((await portOpen(n.port, '127.0.0.1', 200)) && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    if (await portOpen(n.port, '127.0.0.1', 200)) kill('SIGKILL');
  }

  isRunning(i: number): boolean {
    return this.nodes[i]!.child !== null;
  }

  async destroy(): Promise<void> {
    await Promise.all(this.nodes.map((_, i) => this.stopNode(i, 'SIGKILL')));
    rmSync(this.dir, { recursive: true, force: true });
  }
}
