import { expect } from 'chai';
import { rmSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { projectRoot } from '../../src/config.js';
import { Collector, createVhost, type Vhost } from '../support/rabbit.js';
import { PrivateRabbit } from '../support/private-rabbit.js';
import { freePort, spawnGateway, startTestGateway, TEST_API_KEY, tempDir, waitBrokerUp, type GatewayProcess, type TestGateway } from '../support/gateway.js';

interface LoadResult {
  acked: Set<string>;
  failed: number;
}

/** Posts tickets from `workers` concurrent clients until `stop()`; remembers every id the gateway acknowledged. */
function load(baseUrl: () => string, prefix: string, workers = 8) {
  const result: LoadResult = { acked: new Set(), failed: 0 };
  let running = true;
  let n = 0;
  const worker = async () => {
    while (running) {
      const cid = `${prefix}-${n++}`;
      try {
        const r = await fetch(`${baseUrl()}/api/v1/tickets`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${TEST_API_KEY}` },
          body: JSON.stringify({ clientMessageId: cid, citizen: { id: cid }, content: `暴雨后积水严重 ${cid}` }),
          signal: AbortSignal.timeout(5000),
        });
        if (r.status === 202 || r.status === 200) result.acked.add(((await r.json()) as { id: string }).id);
        else {
          result.failed++;
          await r.arrayBuffer();
        }
      } catch {
        result.failed++;
        await new Promise((res) => setTimeout(res, 50));
      }
    }
  };
  const done = Promise.all(Array.from({ length: workers }, worker));
  return {
    result,
    async stop() {
      running = false;
      await done;
      return result;
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('durability: broker outages, SIGKILL and SIGTERM lose nothing acknowledged', function () {
  this.timeout(180_000);

  describe('with a private RabbitMQ node that goes down and comes back', () => {
    let rabbit: PrivateRabbit;
    let tg: TestGateway | undefined;

    before(async function () {
      if (!PrivateRabbit.available()) this.skip();
      rabbit = new PrivateRabbit();
      rabbit.port = await freePort();
    });
    after(async () => {
      await tg?.stop();
      await rabbit?.dispose();
    });

    it('accepts with the broker down, reports the backlog, and publishes everything when it returns', async () => {
      tg = await startTestGateway({}, { vhost: { name: '/', url: rabbit.url, drop: async () => {} }, noCollectors: true });
      const ids: string[] = [];
      for (let i = 0; i < 20; i++) {
        const r = await tg.post('/api/v1/tickets', { clientMessageId: `down-${i}`, content: `停水了 ${i}` });
        expect(r.status).to.equal(202);
        ids.push(((await r.json()) as { id: string }).id);
      }
      const ready = (await (await fetch(`${tg.baseUrl}/readyz`)).json()) as { ready: boolean; broker: string; backlog: number };
      expect(ready).to.include({ ready: true, broker: 'down' });
      expect(ready.backlog).to.be.at.least(20);

      await rabbit.startNode();
      await waitBrokerUp(tg.gateway, 30_000);
      const created = await Collector.open(rabbit.url, 'tickets.created');
      try {
        await created.waitFor((m) => ids.includes(m.body.id), 20, 30_000);
      } finally {
        await created.close();
      }
    });

    it('keeps accepting while the broker restarts mid-load; every acknowledged ticket arrives', async () => {
      const created = await Collector.open(rabbit.url, 'tickets.created');
      try {
        const l = load(() => tg!.baseUrl, 'restart', 4);
        await sleep(800);
        await rabbit.stopNode();
        await sleep(1500);
        await rabbit.startNode();
        await sleep(800);
        const r = await l.stop();
        expect(r.acked.size).to.be.greaterThan(20);
        await created.close();
        const again = await Collector.open(rabbit.url, 'tickets.created', 30_000);
        try {
          // What the first consumer took before the broker went down counts too.
          const seen = new Set<string>(created.messages.map((m) => m.body.id as string).filter((id) => r.acked.has(id)));
          await again.waitFor((m) => {
            if (r.acked.has(m.body.id)) seen.add(m.body.id);
            return seen.size >= r.acked.size;
          }, 1, 60_000);
          const lost = [...r.acked].filter((id) => !seen.has(id));
          expect(lost).to.deep.equal([]);
        } finally {
          await again.close();
        }
      } finally {
        await created.close();
      }
    });
  });

  describe('gateway process killed', () => {
    let vhost: Vhost;
    let dataDir: string;
    let proc: GatewayProcess | undefined;

    before(async () => {
      vhost = await createVhost('kill');
      dataDir = tempDir();
    });
    afterEach(async () => {
      proc?.kill('SIGKILL');
      if (proc) await proc.exited;
      proc = undefined;
    });
    after(async () => {
      await vhost?.drop();
      rmSync(dataDir, { recursive: true, force: true });
    });

    const env = () => ({ AMQP_URL: vhost.url, DATA_DIR: dataDir, APP_API_KEYS: `test:${TEST_API_KEY}`, AMQP_RECONNECT_MAX: '1s' });

    it('after a SIGKILL mid-load every ticket that got 202 is published after restart (at least once)', async () => {
      proc = await spawnGateway(env());
      const created = await Collector.open(vhost.url, 'tickets.created');
      try {
        const l = load(() => proc!.baseUrl, 'kill', 8);
        await sleep(1500);
        proc.kill('SIGKILL');
        await proc.exited;
        const r = await l.stop();
        expect(r.acked.size).to.be.greaterThan(50);
        proc = await spawnGateway(env());
        const seen = new Set<string>();
        await created.waitFor((m) => {
          if (r.acked.has(m.body.id)) seen.add(m.body.id);
          return seen.size >= r.acked.size;
        }, 1, 60_000);
        const lost = [...r.acked].filter((id) => !seen.has(id));
        expect(lost, 'acknowledged but never published').to.deep.equal([]);
      } finally {
        await created.close();
      }
    });

    it('on SIGTERM stops taking input, finishes in flight, waits for confirms and exits 0 within 10 s', async () => {
      proc = await spawnGateway(env());
      const created = await Collector.open(vhost.url, 'tickets.created');
      try {
        const l = load(() => proc!.baseUrl, 'term', 4);
        await sleep(700);
        const t0 = Date.now();
        proc.kill('SIGTERM');
        const code = await proc.exited;
        const elapsed = Date.now() - t0;
        const r = await l.stop();
        expect(code).to.equal(0);
        expect(elapsed).to.be.lessThan(10_000);
        // Everything acknowledged before the signal was confirmed before exit: no restart needed.
        const seen = new Set<string>();
        await created.waitFor((m) => {
          if (r.acked.has(m.body.id)) seen.add(m.body.id);
          return seen.size >= r.acked.size;
        }, 1, 15_000);
        expect(proc.output()).to.contain('"msg":"stopped"');
      } finally {
        await created.close();
      }
    });

    it('refuses to start on an invalid setting, naming the key, the value and what is allowed', async () => {
      let err: Error | null = null;
      try {
        await spawnGateway({ ...env(), DEADLINE_MESSAGE: 'soon' });
      } catch (e) {
        err = e as Error;
      }
      expect(err?.message).to.contain('DEADLINE_MESSAGE = "soon"');
      expect(err?.message).to.contain('expected a duration');
    });

    it('refuses to start, with exit code 78, when settings of a channel do not go together', async () => {
      const dataDir = tempDir('cfg-');
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
        cwd: projectRoot(),
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root', ...env(), DATA_DIR: dataDir, HTTP_PORT: '0', SMTP_URL: 'smtp://127.0.0.1:1' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      try {
        const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
        expect(code).to.equal(78);
        expect(stderr).to.contain('MAILBOX_ADDRESS is required when SMTP_URL is set');
      } finally {
        if (child.exitCode === null) child.kill('SIGKILL');
        rmSync(dataDir, { recursive: true, force: true });
      }
    });
  });
});
