import { expect } from 'chai';
import { pino } from 'pino';
import { PuppetMock, mock } from 'wechaty-puppet-mock';
import { createWechatAdapter } from '../../../src/channels/wechat/adapter.js';
import { loadConfig } from '../../../src/config.js';
import { startTestGateway, waitUntil, type TestGateway } from '../../support/gateway.js';

// The optional Wechaty intake, driven through wechaty-puppet-mock: a contact
// writes to the bot, the ticket is made, the receipt and a downstream reply are
// said back in the same chat.
describe('wechat channel via Wechaty (puppet mock)', function () {
  this.timeout(60_000);
  let tg: TestGateway;
  let mocker: InstanceType<typeof mock.Mocker>;
  let botUser: ReturnType<InstanceType<typeof mock.Mocker>['createContact']>;

  before(async () => {
    mocker = new mock.Mocker();
    const puppet = new PuppetMock({ mocker });
    const config = loadConfig({}, { LOG_LEVEL: 'silent' });
    const adapter = createWechatAdapter(config, pino({ level: 'silent' }), { wechatyPuppet: puppet });
    expect(adapter, 'adapter on with an injected puppet').to.not.equal(null);
    tg = await startTestGateway({}, { adapters: [adapter!] });
    botUser = mocker.createContact({ name: '12345热线' });
    mocker.login(botUser);
  });
  after(async () => {
    await tg?.stop();
  });

  it('a chat message becomes a ticket; the receipt is said back and recorded', async () => {
    const citizen = mocker.createContact({ name: '李女士' });
    const heard: string[] = [];
    // ContactMock is an EventEmitter whose typings do not resolve here: it emits what the contact receives.
    (citizen as unknown as NodeJS.EventEmitter).on('message', (m: { text?: () => string }) => heard.push(m.text?.() ?? ''));
    citizen.say('小区门口井盖丢失，很危险').to(botUser);
    const [created] = await tg.created.waitFor((m) => m.body.content === '小区门口井盖丢失，很危险');
    const t = created!.body;
    expect(t.channel).to.equal('wechat');
    expect(t.source.via).to.equal('wechaty');
    expect(t.citizen).to.include({ channelUserId: citizen.id, name: '李女士' });
    await waitUntil(() => heard.some((x) => x.includes(t.number)), 10_000, 'receipt said back');
    const [ack] = await tg.events.waitFor((e) => e.routingKey === 'ticket.acknowledged.wechat' && e.body.ticketId === t.id);
    expect(ack!.body.via).to.equal('wechaty-say');

    const res = await tg.post(`/api/v1/tickets/${t.id}/replies`, { replyId: `wy-${t.id}`, text: '已通知市政部门，今天内处理。' });
    expect(res.status).to.equal(202);
    await waitUntil(() => heard.includes('已通知市政部门，今天内处理。'), 15_000, 'reply said back');
    const [responded] = await tg.events.waitFor((e) => e.routingKey === 'ticket.responded.wechat' && e.body.ticketId === t.id);
    expect(responded!.body.replyId).to.equal(`wy-${t.id}`);
  });

  it('the bot’s own messages are never tickets', async () => {
    const other = mocker.createContact({ name: '张先生' });
    botUser.say('这是公众号自己发出的消息').to(other);
    expect(await tg.created.settle((m) => m.body.content === '这是公众号自己发出的消息', 800)).to.have.length(0);
  });
});

describe('wechat channel when the Wechaty puppet cannot start', function () {
  this.timeout(60_000);
  let tg: TestGateway;

  after(async () => {
    await tg?.stop();
  });

  it('the gateway starts anyway, says so in /readyz, and the official account still works', async () => {
    tg = await startTestGateway({ WECHAT_TOKEN: 'tok', WECHAT_API_URL: 'http://127.0.0.1:9', WECHATY_PUPPET: 'wechaty-puppet-that-does-not-exist' });
    const ready = (await (await fetch(`${tg.baseUrl}/readyz`)).json()) as { channels: { wechat: { officialAccount: boolean; wechaty: { running: boolean } } } };
    expect(ready.channels.wechat.officialAccount).to.equal(true);
    expect(ready.channels.wechat.wechaty.running).to.equal(false);
    const r = await fetch(`${tg.baseUrl}/wechat?signature=x&timestamp=1&nonce=2&echostr=e`);
    expect(r.status).to.equal(401);
  });
});
