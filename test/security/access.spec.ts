import { expect } from 'chai';
import amqp from 'amqplib';
import Database from 'better-sqlite3';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../../src/config.js';
import type { Ticket } from '../../src/ticket.js';
import { startTestGateway, tempDir, type TestGateway } from '../support/gateway.js';
import { createVhost, publishJson } from '../support/rabbit.js';

/**
 * Contract section 5, "Who may do what", against a running gateway over HTTP: two
 * intake clients (alpha, beta) and one downstream system (ops). Each block is an
 * attack that worked before the roles existed.
 */

const ALPHA = 'alpha-key-1111111111';
const BETA = 'beta-key-2222222222';
const OPS = 'ops-key-3333333333';
const KEYS = { APP_API_KEYS: `alpha:${ALPHA},beta:${BETA}`, DOWNSTREAM_API_KEYS: `ops:${OPS}` };
const UNKNOWN_ID = '00000000-0000-5000-8000-000000000000';
const PHOTO = Buffer.from('a photo of the broken street light');

interface Answer {
  status: number;
  headers: Headers;
  text: string;
}

function as(tg: TestGateway, key: string) {
  const call = async (method: string, path: string, body?: unknown): Promise<Answer> => {
    const r = await fetch(`${tg.baseUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: r.status, headers: r.headers, text: await r.text() };
  };
  return {
    get: (path: string) => call('GET', path),
    post: (path: string, body: unknown) => call('POST', path, body),
    async create(clientMessageId: string, extra: Record<string, unknown> = {}): Promise<{ id: string; number: string }> {
      const r = await call('POST', '/api/v1/tickets', { clientMessageId, citizen: { phone: '13800138000', name: '王五' }, content: `路灯不亮 ${clientMessageId}`, ...extra });
      expect(r.status, r.text).to.equal(202);
      return JSON.parse(r.text) as { id: string; number: string };
    },
  };
}

async function open311(tg: TestGateway, path: string): Promise<Answer> {
  const r = await fetch(`${tg.baseUrl}/open311/v2${path}`);
  return { status: r.status, headers: r.headers, text: await r.text() };
}

async function open311Create(tg: TestGateway, apiKey: string, fields: Record<string, string>): Promise<Answer> {
  const r = await fetch(`${tg.baseUrl}/open311/v2/requests.json`, { method: 'POST', body: new URLSearchParams({ api_key: apiKey, ...fields }) });
  return { status: r.status, headers: r.headers, text: await r.text() };
}

async function publishRaw(url: string, queue: string, content: Buffer, messageId: string): Promise<void> {
  const conn = await amqp.connect(url);
  try {
    const ch = await conn.createConfirmChannel();
    ch.sendToQueue(queue, content, { persistent: true, messageId });
    await ch.waitForConfirms();
  } finally {
    await conn.close();
  }
}

describe('security: who may do what (contract section 5)', function () {
  this.timeout(90_000);
  let tg: TestGateway;
  let alpha: ReturnType<typeof as>;
  let beta: ReturnType<typeof as>;
  let ops: ReturnType<typeof as>;

  before(async () => {
    tg = await startTestGateway({ ...KEYS, APP_RATE_LIMIT: 10_000, REPLY_MAX_PER_TICKET: 105 });
    alpha = as(tg, ALPHA);
    beta = as(tg, BETA);
    ops = as(tg, OPS);
  });
  after(async () => {
    await tg?.stop();
  });

  describe('1. any key read any ticket', () => {
    it("another intake client's ticket, status and replies answer 404 with the body of an unknown id", async () => {
      const mine = await alpha.create('read-1');
      await ops.post(`/api/v1/tickets/${mine.id}/replies`, { replyId: 'read-r1', text: '已派单' });
      const unknown = {
        ticket: await beta.get(`/api/v1/tickets/${UNKNOWN_ID}`),
        status: await beta.get(`/api/v1/tickets/${UNKNOWN_ID}/status`),
        replies: await beta.get(`/api/v1/tickets/${UNKNOWN_ID}/replies`),
      };
      for (const [what, path] of [
        ['ticket', `/api/v1/tickets/${mine.id}`],
        ['status', `/api/v1/tickets/${mine.id}/status`],
        ['replies', `/api/v1/tickets/${mine.id}/replies`],
      ] as const) {
        const other = await beta.get(path);
        expect(other.status, what).to.equal(404);
        expect(other.text, what).to.equal(unknown[what].text);
        expect(other.text, what).not.to.contain('王五');
        expect((await alpha.get(path)).status, `${what} for its creator`).to.equal(200);
        expect((await ops.get(path)).status, `${what} for downstream`).to.equal(200);
      }
      expect(JSON.parse(unknown.ticket.text)).to.deep.equal({ error: { code: 'NOT_FOUND', message: 'no such ticket', issues: [] } });
    });

    it("a ticket of another channel is not an intake client's; downstream reads it", async () => {
      const r = await tg.gateway.intake.accept({
        channel: 'telegram',
        dedupeKey: 'sec-tg-1',
        channelMessageIds: ['sec-tg-1'],
        sentAt: null,
        citizen: { channelUserId: '777', phone: null, email: null, name: '赵六' },
        subject: null,
        content: '小区门口积水严重',
        attachments: [],
        location: null,
        incomplete: false,
        source: { chatId: '777' },
        raw: '{}',
      });
      if (r.status === 'rejected') throw new Error('not accepted');
      const unknownBody = (await alpha.get(`/api/v1/tickets/${UNKNOWN_ID}/status`)).text;
      for (const path of [`/api/v1/tickets/${r.ticket.id}`, `/api/v1/tickets/${r.ticket.id}/status`, `/api/v1/tickets/${r.ticket.id}/replies`]) {
        const a = await alpha.get(path);
        expect(a.status, path).to.equal(404);
        expect(a.text, path).to.equal(unknownBody);
        expect((await ops.get(path)).status, path).to.equal(200);
      }
    });

    it('attachments: the creator fetches by the URL in its ticket; another client gets 404 by any URL; downstream by the bare hash', async () => {
      const mine = await alpha.create('att-1', { attachments: [{ fileName: 'lamp.jpg', mimeType: 'image/jpeg', dataBase64: PHOTO.toString('base64') }] });
      const theirs = await beta.create('att-2');
      const t = JSON.parse((await alpha.get(`/api/v1/tickets/${mine.id}`)).text) as Ticket;
      const att = t.attachments[0]!;
      expect(att.url).to.equal(`/api/v1/attachments/${att.sha256}?ticket=${mine.id}`);
      const own = await alpha.get(att.url);
      expect(own.status).to.equal(200);
      expect(own.text).to.equal(PHOTO.toString());

      const noSuch = await beta.get(`/api/v1/attachments/${'0'.repeat(64)}`);
      expect(noSuch.status).to.equal(404);
      for (const url of [att.url, `/api/v1/attachments/${att.sha256}`, `/api/v1/attachments/${att.sha256}?ticket=${theirs.id}`, `/api/v1/attachments/${att.sha256}?ticket=${UNKNOWN_ID}`]) {
        const r = await beta.get(url);
        expect(r.status, url).to.equal(404);
        expect(r.text, url).to.equal(noSuch.text);
      }
      // An intake client names the ticket; the bare hash proves nothing about ownership.
      expect((await alpha.get(`/api/v1/attachments/${att.sha256}`)).status).to.equal(404);
      const bare = await ops.get(`/api/v1/attachments/${att.sha256}`);
      expect(bare.status).to.equal(200);
      expect(bare.text).to.equal(PHOTO.toString());
      expect((await ops.get(att.url)).status).to.equal(200);
    });
  });

  describe('2. any key answered any citizen', () => {
    it('an intake client posting a reply gets 403, on its own ticket or another; nothing is stored or sent', async () => {
      const a = await alpha.create('rep-403-a');
      const b = await beta.create('rep-403-b');
      for (const [id, replyId] of [[b.id, 'evil-1'], [a.id, 'evil-2'], [UNKNOWN_ID, 'evil-3']] as const) {
        const r = await alpha.post(`/api/v1/tickets/${id}/replies`, { replyId, text: '您的问题已解决' });
        expect(r.status, id).to.equal(403);
        expect(JSON.parse(r.text).error.code).to.equal('FORBIDDEN');
      }
      for (const id of [a.id, b.id]) {
        const st = JSON.parse((await ops.get(`/api/v1/tickets/${id}/status`)).text) as { replies: unknown[]; respondedAt: string | null };
        expect(st.replies).to.deep.equal([]);
        expect(st.respondedAt).to.equal(null);
      }
      const responded = await tg.events.settle((m) => m.routingKey.startsWith('ticket.responded') && [a.id, b.id].includes(m.body.ticketId), 500);
      expect(responded).to.deep.equal([]);
      expect((await ops.post(`/api/v1/tickets/${b.id}/replies`, { replyId: 'ops-1', text: '已派单至街道办' })).status).to.equal(202);
    });

    it('a downstream key does not create tickets: 403 on both ways in, app API and Open311', async () => {
      const body = { clientMessageId: 'ops-create', content: '路灯坏了' };
      expect((await ops.post('/api/v1/tickets', body)).status).to.equal(403);
      expect((await ops.post('/api/v1/tickets?via=express', body)).status).to.equal(403);
      const o = await open311Create(tg, OPS, { service_code: 'help', lat: '36.6', long: '117.0', description: '路灯坏了' });
      expect(o.status).to.equal(403);
    });
  });

  describe('3. Open311 listed everything', () => {
    it("requests.json and requests/:id.json show only the caller's requests; another's answers like an unknown one", async () => {
      const created = await open311Create(tg, BETA, { service_code: 'complaint', lat: '36.66', long: '117.02', description: '楼下饭店油烟太大', first_name: '七', last_name: '孙' });
      expect(created.status).to.equal(201);
      const betaNumber = (JSON.parse(created.text) as { service_request_id: string }[])[0]!.service_request_id;
      const alphaOwn = await alpha.create('o311-a');
      const numbers = [betaNumber, alphaOwn.number, ...Array.from({ length: 998 }, (_, i) => `${betaNumber.slice(0, 9)}${String(i).padStart(6, '0')}`)];
      const list = await open311(tg, `/requests.json?api_key=${ALPHA}&service_request_id=${numbers.join(',')}`);
      expect(list.status).to.equal(200);
      const seen = (JSON.parse(list.text) as { service_request_id: string }[]).map((r) => r.service_request_id);
      expect(seen).to.include(alphaOwn.number).and.not.include(betaNumber);
      // Of today's numbers, exactly alpha's own come back (other tests here create tickets of every owner).
      const owners = (await Promise.all(numbers.map((n) => tg.gateway.intake.getTicketByNumber(n)))).filter((t) => t !== null);
      expect(owners.map((t) => t.source.client)).to.include.members(['alpha', 'beta']);
      expect(seen).to.have.members(owners.filter((t) => t.channel === 'app' && t.source.client === 'alpha').map((t) => t.number));

      const other = await open311(tg, `/requests/${betaNumber}.json?api_key=${ALPHA}`);
      const none = await open311(tg, `/requests/19990101-000001.json?api_key=${ALPHA}`);
      expect(other.status).to.equal(404);
      expect(other.text).to.equal(none.text);

      const mine = await open311(tg, `/requests/${betaNumber}.json?api_key=${BETA}`);
      expect(mine.status).to.equal(200);
      expect(JSON.parse(mine.text)[0]).to.include({ service_request_id: betaNumber });
      expect((await open311(tg, `/requests.json?api_key=${OPS}&service_request_id=${betaNumber},${alphaOwn.number}`)).text).to.contain(betaNumber).and.to.contain(alphaOwn.number);
    });

    it('a request posted with service_code=complaint reads back as complaint, whatever the text says', async () => {
      const created = await open311Create(tg, BETA, { service_code: 'complaint', lat: '36.66', long: '117.02', description: '人行道地砖松动' });
      const number = (JSON.parse(created.text) as { service_request_id: string }[])[0]!.service_request_id;
      const [view] = JSON.parse((await open311(tg, `/requests/${number}.json?api_key=${BETA}`)).text) as { service_code: string; service_name: string }[];
      expect(view).to.include({ service_code: 'complaint', service_name: '投诉 Complaint' });
    });
  });

  describe('4. replyId was global', () => {
    it('the same replyId on two tickets is two replies, each stored, sent and listed (HTTP)', async () => {
      const a = await alpha.create('rid-a');
      const b = await beta.create('rid-b');
      expect((await ops.post(`/api/v1/tickets/${a.id}/replies`, { replyId: 'case-1', text: '答复甲' })).status).to.equal(202);
      const second = await ops.post(`/api/v1/tickets/${b.id}/replies`, { replyId: 'case-1', text: '答复乙' });
      expect(second.status).to.equal(202);
      expect(JSON.parse(second.text)).to.include({ status: 'queued' });
      expect((await ops.post(`/api/v1/tickets/${b.id}/replies`, { replyId: 'case-1', text: '答复乙' })).status).to.equal(200);
      for (const [id, text] of [[a.id, '答复甲'], [b.id, '答复乙']] as const) {
        await tg.events.waitFor((m) => m.routingKey === 'ticket.responded.app' && m.body.ticketId === id && m.body.replyId === 'case-1');
        const st = JSON.parse((await ops.get(`/api/v1/tickets/${id}/status`)).text) as { replies: { replyId: string; text: string }[] };
        expect(st.replies.map((r) => [r.replyId, r.text])).to.deep.equal([['case-1', text]]);
      }
      // Each ticket's own client sees its reply.
      expect(JSON.parse((await beta.get(`/api/v1/tickets/${b.id}/replies`)).text)[0]).to.include({ replyId: 'case-1', text: '答复乙' });
    });

    it('the same through the tickets.replies queue', async () => {
      const a = await alpha.create('rid-qa');
      const b = await beta.create('rid-qb');
      await publishJson(tg.amqpUrl, 'tickets.replies', { ticketId: a.id, replyId: 'q-case', text: '队列答复甲' });
      await publishJson(tg.amqpUrl, 'tickets.replies', { ticketId: b.id, replyId: 'q-case', text: '队列答复乙' });
      for (const id of [a.id, b.id]) {
        await tg.events.waitFor((m) => m.routingKey === 'ticket.responded.app' && m.body.ticketId === id && m.body.replyId === 'q-case');
      }
      const st = JSON.parse((await ops.get(`/api/v1/tickets/${b.id}/status`)).text) as { replies: { text: string }[] };
      expect(st.replies.map((r) => r.text)).to.deep.equal(['队列答复乙']);
    });

    it('a tickets.replies message that is not JSON is reported as such, naming no channel', async () => {
      await publishRaw(tg.amqpUrl, 'tickets.replies', Buffer.from('replyId=1&text=hello'), 'not-json-1');
      const [f] = await tg.repliesFailed.waitFor((m) => m.body.replyId === 'not-json-1');
      expect(f!.body.error).to.deep.equal({ code: 'INPUT_INVALID', message: 'body is not valid JSON' });
      expect(f!.routingKey).to.equal('reply.failed.unknown');
      expect(f!.properties.headers!.channel).to.equal('unknown');
    });
  });

  describe('6. floods', () => {
    it('a ticket takes REPLY_MAX_PER_TICKET replies, then 429 (HTTP) and reply.failed (queue); its status lists the last 100', async () => {
      const { id } = await alpha.create('flood-1');
      for (let i = 0; i < 105; i += 15) {
        const batch = await Promise.all(Array.from({ length: Math.min(15, 105 - i) }, (_, j) => ops.post(`/api/v1/tickets/${id}/replies`, { replyId: `f-${i + j}`, text: `答复 ${i + j}` })));
        expect(batch.map((r) => r.status)).to.satisfy((s: number[]) => s.every((x) => x === 202));
      }
      const over = await ops.post(`/api/v1/tickets/${id}/replies`, { replyId: 'f-over', text: 'x'.repeat(4000) });
      expect(over.status).to.equal(429);
      expect(JSON.parse(over.text).error.code).to.equal('REPLY_LIMIT');
      // A retry of a reply it already took is still "already received", not refused.
      expect((await ops.post(`/api/v1/tickets/${id}/replies`, { replyId: 'f-3', text: '答复 3' })).status).to.equal(200);

      await publishJson(tg.amqpUrl, 'tickets.replies', { ticketId: id, replyId: 'f-queue', text: '队列答复' });
      const [f] = await tg.repliesFailed.waitFor((m) => m.body.replyId === 'f-queue');
      expect(f!.body).to.include({ ticketId: id });
      expect(f!.body.error.code).to.equal('REPLY_LIMIT');
      expect(f!.routingKey).to.equal('reply.failed.app');

      for (const path of [`/api/v1/tickets/${id}/status`, `/api/v1/tickets/${id}/replies`]) {
        const body = JSON.parse((await ops.get(path)).text) as { replies?: { replyId: string }[] } | { replyId: string }[];
        const replies = Array.isArray(body) ? body : body.replies!;
        expect(replies.map((r) => r.replyId), path).to.deep.equal(Array.from({ length: 100 }, (_, i) => `f-${i + 5}`));
      }
    });

    it('every authenticated route is rate-limited per key, Open311 reads included; another key keeps its own budget', async () => {
      const small = await startTestGateway({ ...KEYS, APP_RATE_LIMIT: 2 }, { noCollectors: true });
      const refill = () => new Promise((r) => setTimeout(r, 1100));
      // Bursts in parallel: with 2 requests per second, most of 6 at once are refused whatever the machine's speed.
      const burst = (n: number, f: () => Promise<Answer>) => Promise.all(Array.from({ length: n }, f));
      try {
        const a = as(small, ALPHA);
        const { id, number } = await a.create('rl-1');
        const routes: [string, () => Promise<Answer>][] = [
          ['ticket', () => a.get(`/api/v1/tickets/${id}`)],
          ['status', () => a.get(`/api/v1/tickets/${id}/status`)],
          ['attachment', () => a.get(`/api/v1/attachments/${'0'.repeat(64)}?ticket=${id}`)],
          ['open311 request', () => open311(small, `/requests/${number}.json?api_key=${ALPHA}`)],
          ['open311 requests', () => open311(small, `/requests.json?api_key=${ALPHA}&service_request_id=${number}`)],
        ];
        for (const [what, call] of routes) {
          await refill();
          const answers = await burst(6, call);
          const limited = answers.filter((r) => r.status === 429);
          expect(limited.length, what).to.be.at.least(3);
          expect(Number(limited[0]!.headers.get('retry-after')), what).to.be.greaterThan(0);
        }
        // alpha is over its rate; ops has not used its own.
        expect((await as(small, OPS).get(`/api/v1/tickets/${id}/status`)).status).to.equal(200);
      } finally {
        await small.stop();
      }
    });
  });
});

describe('security: keys and roles in the configuration', () => {
  it('a key or a client name in both APP_API_KEYS and DOWNSTREAM_API_KEYS stops start-up, naming the setting', () => {
    expect(() => loadConfig({}, { APP_API_KEYS: 'app:k1', DOWNSTREAM_API_KEYS: 'ops:k1' })).to.throw(/DOWNSTREAM_API_KEYS = "ops:\*\*\*": .*also in APP_API_KEYS/);
    expect(() => loadConfig({}, { APP_API_KEYS: 'app:k1', DOWNSTREAM_API_KEYS: 'app:k2' })).to.throw(/DOWNSTREAM_API_KEYS = "app:\*\*\*": client name app is also in APP_API_KEYS/);
    const c = loadConfig({}, { APP_API_KEYS: 'app:k1', DOWNSTREAM_API_KEYS: 'ops:k2,ops:k3' });
    expect([...c.DOWNSTREAM_API_KEYS]).to.deep.equal([
      ['k2', 'ops'],
      ['k3', 'ops'],
    ]);
    expect(c.REPLY_MAX_PER_TICKET).to.equal(50);
  });
});

describe('security: stores written with global reply keys', function () {
  this.timeout(90_000);

  it('old `reply:<replyId>` rows keep their status and idempotency; the same replyId on another ticket is new', async () => {
    const vhost = await createVhost();
    const dataDir = tempDir('gw-migrate-');
    let tg: TestGateway | null = null;
    try {
      tg = await startTestGateway(KEYS, { vhost, dataDir, noCollectors: true });
      const a = await as(tg, ALPHA).create('mig-a');
      const b = await as(tg, ALPHA).create('mig-b');
      await tg.stop();
      tg = null;

      // What the earlier version wrote for a sent and a still pending reply.
      const db = new Database(join(dataDir, 'gateway.sqlite'));
      const insert = db.prepare(
        `INSERT INTO outbound (id, ticket_id, channel, kind, text, target, state, attempts, next_at, created_at, sent_at, via)
         VALUES (?, ?, 'app', 'reply', ?, ?, ?, ?, ?, ?, ?, ?)`,
      );
      const target = JSON.stringify({ citizen: { channelUserId: 'x', phone: null, email: null, name: null }, source: {}, subject: null, ticketNumber: a.number });
      const now = Date.now();
      insert.run('reply:old-1', a.id, '旧答复一', target, 'sent', 1, now - 2000, now - 2000, now - 1900, 'app-poll');
      insert.run('reply:old-2', a.id, '旧答复二', target, 'pending', 0, now - 1000, now - 1000, null, null);
      db.close();

      tg = await startTestGateway(KEYS, { vhost, dataDir });
      const ops = as(tg, OPS);
      await tg.events.waitFor((m) => m.routingKey === 'ticket.responded.app' && m.body.ticketId === a.id && m.body.replyId === 'old-2');
      const st = JSON.parse((await ops.get(`/api/v1/tickets/${a.id}/status`)).text) as { replies: { replyId: string; state: string }[] };
      expect(st.replies.map((r) => [r.replyId, r.state])).to.deep.equal([
        ['old-1', 'sent'],
        ['old-2', 'sent'],
      ]);
      const again = await ops.post(`/api/v1/tickets/${a.id}/replies`, { replyId: 'old-1', text: '旧答复一' });
      expect(again.status).to.equal(200);
      expect(JSON.parse(again.text)).to.include({ status: 'already-received' });
      expect((await ops.post(`/api/v1/tickets/${b.id}/replies`, { replyId: 'old-1', text: '新答复' })).status).to.equal(202);

      // Starting again on the migrated file changes nothing.
      await tg.restart();
      const st2 = JSON.parse((await as(tg, OPS).get(`/api/v1/tickets/${a.id}/status`)).text) as { replies: { replyId: string }[] };
      expect(st2.replies.map((r) => r.replyId)).to.deep.equal(['old-1', 'old-2']);
      expect((await as(tg, OPS).post(`/api/v1/tickets/${a.id}/replies`, { replyId: 'old-2', text: '旧答复二' })).status).to.equal(200);
    } finally {
      await tg?.stop();
      await vhost.drop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
