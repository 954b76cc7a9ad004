import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Parser, DiagnosticSeverity } from '@asyncapi/parser';
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { publishJson, type Received } from '../support/rabbit.js';
import { BINDINGS, EXCHANGE, QUEUES, UNROUTED_EXCHANGE } from '../../src/publish/topology.js';
import { topicMatches } from '../../src/publish/asyncapi.js';

// ajv-formats is CommonJS with a default export; under NodeNext the plugin is that default.
const addFormats = addFormatsModule as unknown as typeof addFormatsModule.default;
const run = promisify(execFile);

type Json = any;

/** Follows a local `#/a/b` reference inside the document. */
function deref(doc: Json, node: Json): Json {
  if (!node || typeof node.$ref !== 'string') return node;
  return (node.$ref as string)
    .slice(2)
    .split('/')
    .reduce((n: Json, k: string) => n[k.replace(/~1/g, '/').replace(/~0/g, '~')], doc);
}

/** The document's channel on the `tickets` exchange whose address (with parameters as single words) is this routing key. */
function channelForKey(doc: Json, key: string): { id: string; channel: Json } {
  const hits = Object.entries(doc.channels as Record<string, Json>).filter(([, c]) => {
    if (c.bindings?.amqp?.is !== 'routingKey' || c.bindings.amqp.exchange.name !== EXCHANGE || typeof c.address !== 'string') return false;
    const re = new RegExp(`^${c.address.replace(/\./g, '\\.').replace(/\{[^}]+\}/g, '[^.]+')}$`);
    return re.test(key);
  });
  expect(hits.map(([id]) => id), `channels matching ${key}`).to.have.length(1);
  return { id: hits[0]![0], channel: hits[0]![1] };
}

describe('AsyncAPI document (GET /asyncapi.json)', function () {
  this.timeout(60_000);
  let tg: TestGateway;
  let text: string;
  let doc: Json;
  const ajv = new Ajv({ allErrors: true });
  addFormats(ajv);

  /** Checks a consumed message against the document: payload, headers, AMQP properties, parameters. */
  function conforms(m: Received): string {
    const { id, channel } = channelForKey(doc, m.routingKey);
    const messages = Object.values(channel.messages as Record<string, Json>).map((x) => deref(doc, x));
    expect(messages).to.have.length(1);
    const message = messages[0]!;
    const payload = ajv.compile(deref(doc, message.payload));
    expect(payload(m.body), `${m.routingKey} body: ${ajv.errorsText(payload.errors)}`).to.equal(true);
    const headers = ajv.compile(deref(doc, message.headers));
    expect(headers(m.properties.headers), `${m.routingKey} headers: ${ajv.errorsText(headers.errors)}`).to.equal(true);
    expect(m.properties.type).to.equal(message.bindings.amqp.messageType);
    expect(m.properties.contentType).to.equal(message.contentType);
    expect(m.properties.contentEncoding).to.equal(message.bindings.amqp.contentEncoding);
    expect(m.properties.deliveryMode).to.equal(2);
    expect(m.properties.messageId).to.be.a('string').and.not.equal('');
    expect(m.properties.timestamp).to.be.a('number');
    // Each parameter's value in the routing key is one the document allows.
    const names = [...(channel.address as string).matchAll(/\{([^}]+)\}/g)].map((x) => x[1]!);
    const words = m.routingKey.split('.');
    (channel.address as string).split('.').forEach((w, i) => {
      const p = /^\{(.+)\}$/.exec(w)?.[1];
      if (p) expect(channel.parameters[p].enum, `${m.routingKey} {${p}}`).to.include(words[i]);
    });
    expect(names.every((n) => channel.parameters[n])).to.equal(true);
    return id;
  }

  before(async () => {
    tg = await startTestGateway({ DEADLINE_MESSAGE: '2s' });
    // No API key: the document is public, like the ticket schema.
    const res = await fetch(`${tg.baseUrl}/asyncapi.json`);
    expect(res.status).to.equal(200);
    expect(res.headers.get('content-type')).to.match(/^application\/json/);
    text = await res.text();
    doc = JSON.parse(text);
  });
  after(async () => {
    await tg?.stop();
  });

  it('is a valid AsyncAPI 3.0 document for the official parser: no errors, no warnings', async () => {
    const { document, diagnostics } = await new Parser().parse(text);
    const problems = diagnostics
      .filter((d) => d.severity === DiagnosticSeverity.Error || d.severity === DiagnosticSeverity.Warning)
      .map((d) => `${d.code} at ${d.path.join('.')}: ${d.message}`);
    expect(problems).to.deep.equal([]);
    expect(document).to.not.equal(undefined);
    expect(document!.version()).to.equal('3.0.0');
    // Every operation the parsed model sees is on a channel with an AMQP 0.3.0 binding.
    for (const op of document!.operations()) {
      for (const ch of op.channels()) expect(ch.bindings().get('amqp')?.version(), op.id()).to.equal('0.3.0');
    }
  });

  it('describes the topology the gateway really declared on the broker', async () => {
    const { stdout } = await run('rabbitmqctl', ['-q', 'list_bindings', '-p', tg.vhost.name, 'source_name', 'destination_name', 'destination_kind', 'routing_key', '--formatter', 'json']);
    const declared = (JSON.parse(stdout) as { source_name: string; destination_name: string; destination_kind: string; routing_key: string }[])
      .filter((b) => b.source_name !== '' && b.destination_kind === 'queue')
      .map((b) => `${b.source_name} -> ${b.destination_name} : ${b.routing_key}`)
      .sort();
    const documented: string[] = [];
    for (const c of Object.values(doc.channels as Record<string, Json>)) {
      const amqp = c.bindings.amqp;
      if (amqp.is !== 'queue') continue;
      expect(amqp.queue.durable).to.equal(true);
      expect(amqp['x-arguments']).to.deep.equal({ 'x-queue-type': 'quorum' });
      for (const b of amqp['x-bindings'] ?? []) documented.push(`${b.exchange} -> ${amqp.queue.name} : ${b.routingKey}`);
    }
    expect(documented.sort()).to.deep.equal(declared);
    const queues = Object.values(doc.channels as Record<string, Json>).filter((c) => c.bindings.amqp.is === 'queue').map((c) => c.bindings.amqp.queue.name);
    expect(queues.sort()).to.deep.equal(Object.values(QUEUES).sort());
    const exchanges = Object.values(doc.channels as Record<string, Json>)
      .filter((c) => c.bindings.amqp.is === 'routingKey')
      .map((c) => `${c.bindings.amqp.exchange.name}:${c.bindings.amqp.exchange.type}`);
    expect([...new Set(exchanges)].sort()).to.deep.equal([`${EXCHANGE}:topic`, `${UNROUTED_EXCHANGE}:fanout`].sort());
    // Every routing key the document names reaches a queue through a declared binding, so none goes to tickets.unrouted.
    for (const c of Object.values(doc.channels as Record<string, Json>)) {
      if (c.bindings.amqp.is !== 'routingKey' || c.address === null) continue;
      const key = (c.address as string).replace(/\{[^}]+\}/g, 'x');
      expect(BINDINGS.some(([, pattern]) => topicMatches(pattern, key)), c.address).to.equal(true);
    }
  });

  it('real messages from tickets.created, tickets.events, intake.rejected and tickets.replies.failed match their payload and header schemas', async () => {
    const post = async (body: unknown) => {
      const res = await tg.post('/api/v1/tickets', body);
      return { status: res.status, body: (await res.json()) as { id: string } };
    };
    const answered = await post({ clientMessageId: 'aa-1', citizen: { phone: '138 0013 8000', name: '张三' }, content: '小区停电了，请尽快处理', location: { lat: 36.65, lon: 117.12, address: '历下区经十路5号' } });
    const waiting = await post({ clientMessageId: 'aa-2', citizen: { id: 'u-aa-2' }, content: 'The street light at No. 5 Jingshi Road is broken' });
    expect(answered.status).to.equal(202);
    expect(waiting.status).to.equal(202);
    const reply = await tg.post(`/api/v1/tickets/${answered.body.id}/replies`, { replyId: 'aa-r1', text: '已派单处理' });
    expect(reply.status).to.equal(202);
    expect((await post({ clientMessageId: 'aa-3', citizen: { id: 'u-aa-3' }, content: '   ' })).status).to.equal(422);
    await publishJson(tg.amqpUrl, QUEUES.replies, { ticketId: 'no-such-ticket', replyId: 'aa-r2', text: '您好' });

    const seen = new Set<string>();
    const check = (ms: Received[]) => ms.forEach((m) => seen.add(conforms(m)));
    check(await tg.created.waitFor((m) => m.body.id === answered.body.id || m.body.id === waiting.body.id, 2));
    check(await tg.events.waitFor((m) => m.routingKey.startsWith('ticket.acknowledged.'), 2));
    check(await tg.events.waitFor((m) => m.routingKey.startsWith('ticket.responded.') && m.body.ticketId === answered.body.id));
    check(await tg.events.waitFor((m) => m.routingKey.startsWith('ticket.deadline.warning.') && m.body.ticketId === waiting.body.id));
    check(await tg.events.waitFor((m) => m.routingKey.startsWith('ticket.deadline.breached.') && m.body.ticketId === waiting.body.id));
    check(await tg.rejected.waitFor((m) => m.routingKey === 'intake.rejected.app'));
    check(await tg.repliesFailed.waitFor((m) => m.body.replyId === 'aa-r2'));
    expect([...seen].sort()).to.deep.equal(['intakeRejected', 'replyFailed', 'ticketAcknowledged', 'ticketCreated', 'ticketDeadlineBreached', 'ticketDeadlineWarning', 'ticketResponded']);
  });

  it('the payload schemas are strict: a field the code does not send fails validation', () => {
    const { channel } = channelForKey(doc, 'ticket.responded.app');
    const schema = deref(doc, deref(doc, Object.values(channel.messages as Record<string, Json>)[0]).payload);
    const body = { ticketId: '6f1c2b4e-9a3d-5e8f-b1c0-5a7d3e2f1a90', number: '20261123-000042', replyId: 'r', at: '2026-11-23T06:01:02.345Z', withinDeadline: true, latencyMs: 5 };
    expect(ajv.validate(schema, body), ajv.errorsText()).to.equal(true);
    expect(ajv.validate(schema, { ...body, extra: 1 })).to.equal(false);
  });
});
