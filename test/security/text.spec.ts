import { expect } from 'chai';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { TicketV1, type Ticket } from '../../src/ticket.js';

/**
 * Contract section 5, "Text", attacked over real HTTP against a running gateway:
 * NUL and bidi overrides in content and names, a subject carrying a mail header,
 * an idempotency key with a lone surrogate. What reaches RabbitMQ and what the
 * ticket API answers must be clean; the same input twice is still one ticket.
 */

const BIDI = ['\u202a', '\u202b', '\u202c', '\u202d', '\u202e', '\u2066', '\u2067', '\u2068', '\u2069'];
const FORBIDDEN = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function expectClean(t: Ticket): void {
  const texts: [string, string | null][] = [
    ['content', t.content],
    ['subject', t.subject],
    ['citizen.name', t.citizen.name],
    ['citizen.channelUserId', t.citizen.channelUserId],
    ['location.address', t.location?.address ?? null],
    ...t.channelMessageIds.map((id, i): [string, string] => [`channelMessageIds[${i}]`, id]),
    ...t.attachments.map((a, i): [string, string] => [`attachments[${i}].fileName`, a.fileName]),
    ['source', JSON.stringify(t.source)],
  ];
  for (const [what, s] of texts) if (s !== null) expect(FORBIDDEN.test(s), `${what} = ${JSON.stringify(s)}`).to.equal(false);
  for (const [what, s] of [['subject', t.subject], ['citizen.name', t.citizen.name]] as const) if (s !== null) expect(s, what).not.to.match(/[\n\t\u2028\u2029]/);
}

describe('security: ticket text over HTTP (contract section 5, "Text")', function () {
  this.timeout(60_000);
  let tg: TestGateway;

  before(async () => {
    tg = await startTestGateway();
  });
  after(async () => {
    await tg?.stop();
  });

  const hostile = {
    clientMessageId: 'sec-text-1',
    citizen: { id: `u\u202e-7\u0000`, name: `张\u0000三\u202e\nBcc: x@evil.example\t${BIDI.join('')}` },
    subject: 'Hello\nBcc: victim@example.cn\r\nX-Injected:\u0085 yes\u2028end',
    content: `路灯\u0000坏了\u202e。\u2066请\u2067尽\u2068快\u2069修\u001b[31m理\u007f\u0090`,
    location: { lat: 36.65, lon: 117.12, address: `经十路\u202e5号\u0000` },
    attachments: [{ fileName: `invoice\u202efdp.exe\n`, mimeType: 'application/pdf\u0000', dataBase64: 'JVBERg==' }],
  };

  it('NUL, bidi overrides and isolates leave content, names, ids, address and file names; subject and name become one line', async () => {
    const res = await tg.post('/api/v1/tickets', hostile);
    expect(res.status).to.equal(202);
    const { id } = (await res.json()) as { id: string };
    const [m] = await tg.created.waitFor((x) => x.body.id === id);
    const t = TicketV1.parse(m!.body);
    expectClean(t);
    expect(t.content).to.equal('路灯坏了。请尽快修[31m理');
    expect(t.subject).to.equal('Hello Bcc: victim@example.cn X-Injected: yes end');
    expect(t.citizen.name).to.equal('张三 Bcc: x@evil.example');
    expect(t.citizen.channelUserId).to.equal('u\ufffd-7\ufffd');
    expect(t.location?.address).to.equal('经十路5号');
    expect(t.attachments[0]!.fileName).to.equal('invoicefdp.exe');
    expect(t.attachments[0]!.mimeType).to.equal('application/pdf\ufffd');
    // The ticket API shows the same clean ticket.
    const got = (await (await tg.get(`/api/v1/tickets/${id}`)).json()) as Ticket;
    expect(got.subject).to.equal(t.subject);
    expect(got.content).to.equal(t.content);
  });

  it('the same hostile input twice is one ticket: 200 with the same answer, no second message', async () => {
    const body = { ...hostile, clientMessageId: 'sec-text-2' };
    const first = await tg.post('/api/v1/tickets', body);
    const second = await tg.post('/api/v1/tickets', body);
    expect(first.status).to.equal(202);
    expect(second.status).to.equal(200);
    const a = (await first.json()) as { id: string };
    expect(await second.json()).to.deep.equal(a);
    expect(await tg.created.settle((x) => x.body.id === a.id, 800)).to.have.length(1);
  });

  it('a clientMessageId with a lone surrogate, a control or a bidi override is refused with 400, not cleaned', async () => {
    for (const cmid of ['\\ud800', 'a\\udfffb', 'x\\u0000', 'x\\u202e', 'x\\n1']) {
      // Written as JSON escapes: the lone surrogate must reach the server as sent, not as UTF-8's U+FFFD.
      const res = await tg.post('/api/v1/tickets', `{"clientMessageId":"sec-${cmid}","content":"路灯坏了"}`);
      expect(res.status, cmid).to.equal(400);
      const body = (await res.json()) as { error: { code: string; issues: { path: string }[] } };
      expect(body.error.code).to.equal('INPUT_INVALID');
      expect(JSON.stringify(body.error.issues)).to.contain('clientMessageId');
    }
    // `sec-\ud800` and `sec-\udbff` would both clean to `sec-\ufffd`: neither became a ticket another could be taken for.
    const before = tg.created.messages.length;
    await new Promise((r) => setTimeout(r, 300));
    expect(tg.created.messages.filter((x) => String(x.body.source?.clientMessageId ?? '').startsWith('sec-\ufffd'))).to.have.length(0);
    expect(tg.created.messages.length).to.equal(before);
  });

  it('the ticket schema itself refuses text the cleanup would have removed, so nothing published can hold it', () => {
    const base = TicketV1.parse(JSON.parse(JSON.stringify(sample())));
    const bad: [string, (t: Record<string, any>) => void][] = [
      ['NUL in content', (t) => (t.content = 'a\u0000b')],
      ['bidi override in content', (t) => (t.content = 'a\u202eb')],
      ['isolate in name', (t) => (t.citizen.name = 'a\u2066b')],
      ['newline in subject', (t) => (t.subject = 'Hello\nBcc: x@y.cn')],
      ['tab in name', (t) => (t.citizen.name = 'a\tb')],
      ['lone surrogate in channelMessageIds', (t) => (t.channelMessageIds = ['m\ud800'])],
      ['C1 control in channelUserId', (t) => (t.citizen.channelUserId = 'u\u009b')],
      ['bidi override in a file name', (t) => (t.attachments = [{ ...att, fileName: 'a\u202eexe.pdf' }])],
      ['control in source', (t) => (t.source = { nested: { v: ['\u0007'] } })],
    ];
    for (const [what, spoil] of bad) {
      const t = structuredClone(base) as Record<string, any>;
      spoil(t);
      expect(TicketV1.safeParse(t).success, what).to.equal(false);
    }
    expect(TicketV1.safeParse({ ...base, content: 'line one\n\tline two' }).success, 'LF and tab are allowed in content').to.equal(true);
  });
});

const att = { fileName: 'a.pdf', mimeType: 'application/pdf', size: 1, sha256: '0'.repeat(64), url: '/api/v1/attachments/x' };
function sample() {
  return {
    schemaVersion: 1,
    id: '6f1c2b4e-9a3d-5e8f-b1c0-5a7d3e2f1a90',
    number: '20261201-000001',
    channel: 'app',
    channelMessageIds: ['m-1'],
    receivedAt: '2026-12-01T12:00:00.000Z',
    sentAt: null,
    citizen: { channelUserId: 'u-1', phone: null, email: null, name: '张三' },
    subject: null,
    content: '路灯坏了',
    attachments: [],
    location: null,
    category: 'help',
    language: 'zh',
    emergency: null,
    outOfScope: null,
    repeatOf: null,
    deadline: { policy: 'message', duration: 'PT3M', respondBy: '2026-12-01T12:03:00.000Z' },
    incomplete: false,
    source: {},
  };
}
