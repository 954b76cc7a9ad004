import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { startDovecot, type Dovecot } from '../support/dovecot.js';
import { spawnGateway, startNodeFlags, tempDir, TEST_DOWNSTREAM_KEY, waitUntil, type GatewayProcess } from '../support/gateway.js';
import { projectRoot } from '../../src/config.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { Collector, createVhost, type Vhost } from '../support/rabbit.js';
import { gbkMail, uniqueId } from '../fixtures/mail/build.js';

const MB = 1024 * 1024;

/** Peak resident set (VmHWM) of a process, in MB. */
function peakRssMb(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : NaN;
}

/**
 * `npm start` runs the gateway with a heap limit (package.json), which keeps its RSS down
 * under load. A hard limit must not cost the largest legitimate inputs: mails just under
 * MAIL_MAX_BYTES with attachments near ATTACHMENT_MAX_BYTES, several at once, and their
 * attachments downloaded by many clients at once (PostgreSQL returns a bytea as a hex
 * string twice its size before it becomes bytes).
 */
describe('the gateway as npm start runs it takes the largest mails and serves their attachments', function () {
  this.timeout(240_000);

  it('npm start sets a heap limit', () => {
    expect(startNodeFlags(projectRoot())).to.include('--max-old-space-size=256');
  });

  for (const storeKind of ['sqlite', 'postgres'] as const) {
    describe(storeKind, () => {
      let dovecot: Dovecot | undefined;
      let vhost: Vhost | undefined;
      let db: TestDatabase | undefined;
      let proc: GatewayProcess | undefined;
      let created: Collector | undefined;
      const dir = tempDir('gw-large-');

      before(async () => {
        dovecot = await startDovecot();
        vhost = await createVhost(`large-${storeKind}`);
        if (storeKind === 'postgres') db = await createTestDatabase('large');
        proc = await spawnGateway({
          AMQP_URL: vhost.url,
          DATA_DIR: dir,
          IMAP_URL: dovecot.url,
          DOWNSTREAM_API_KEYS: `ops:${TEST_DOWNSTREAM_KEY}`,
          LOG_LEVEL: 'warn',
          ...(db ? { DATABASE_URL: db.url } : {}),
        });
        // The gateway declares the queues once its broker link is up.
        await waitUntil(async () => (created = await Collector.open(vhost!.url, 'tickets.created').catch(() => undefined)) !== undefined, 15_000, 'tickets.created to exist');
      });
      after(async () => {
        if (proc) {
          proc.kill('SIGKILL');
          await proc.exited;
        }
        await created?.close();
        await dovecot?.stop();
        await vhost?.drop();
        await db?.drop();
        rmSync(dir, { recursive: true, force: true });
      });
      afterEach(function () {
        if (this.currentTest?.state === 'failed' && proc) console.log(proc.output().split('\n').slice(-40).join('\n'));
      });

      it('three 22 MB mails with two 8 MB attachments each become tickets; 24 downloads at once are whole or refused with Retry-After', async () => {
        const files = new Map<string, Buffer>();
        const ids: string[] = [];
        for (let i = 0; i < 3; i++) {
          const photos = [0, 1].map((k) => ({ fileName: `现场照片${i}-${k}.jpg`, mimeType: 'image/jpeg', data: randomBytes(8 * MB) }));
          for (const p of photos) files.set(createHash('sha256').update(p.data).digest('hex'), p.data);
          const id = uniqueId(`large-${i}`);
          ids.push(id);
          const raw = gbkMail({ messageId: id, attachments: photos });
          expect(raw.length).to.be.within(20 * MB, 25 * MB);
          await dovecot!.append(raw);
        }
        const tickets = await created!.waitFor((m) => ids.includes(m.body.source?.messageId), 3, 120_000);
        const listed = tickets.flatMap((t) => t.body.attachments as { sha256: string; size: number }[]);
        expect(listed.map((a) => a.sha256).sort()).to.deep.equal([...files.keys()].sort());

        const shas = [...files.keys()];
        const answers = await Promise.all(
          Array.from({ length: 24 }, async (_, n) => {
            const sha = shas[n % shas.length]!;
            const r = await fetch(`${proc!.baseUrl}/api/v1/attachments/${sha}`, { headers: { authorization: `Bearer ${TEST_DOWNSTREAM_KEY}` } });
            const body = Buffer.from(await r.arrayBuffer());
            return { sha, status: r.status, retryAfter: r.headers.get('retry-after'), body };
          }),
        );
        const whole = answers.filter((a) => a.status === 200);
        for (const a of whole) expect(a.body.equals(files.get(a.sha)!), `attachment ${a.sha.slice(0, 8)} byte for byte`).to.equal(true);
        for (const a of answers.filter((x) => x.status !== 200)) {
          expect(a.status).to.equal(429);
          expect(a.retryAfter).to.equal('1');
          expect(JSON.parse(a.body.toString()).error.code).to.equal('RATE_LIMITED');
        }
        // 4 at a time and 16 waiting: at least 20 of the 24 are served.
        expect(whole.length).to.be.at.least(20);
        expect(proc!.child.exitCode, 'still running').to.equal(null);
        console.log(`      ${storeKind}: ${whole.length} of 24 downloads served, ${24 - whole.length} refused; gateway peak RSS ${peakRssMb(proc!.child.pid!)} MB`);
      });
    });
  }
});
