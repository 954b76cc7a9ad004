import { expect } from 'chai';
import type { Channel } from '../../src/ticket.js';
import { statusNotFoundText } from '../../src/channels/status-query.js';
import { startTestGateway, waitUntil, type StoreChoice, type TestGateway } from '../support/gateway.js';
import { TestSmsc } from '../support/smsc.js';
import type { Received } from '../support/rabbit.js';
import { FAST, nextPhone } from './sms/helpers.js';
import { nextMsgId, pushToWechat, startFakeWechat, textMessage, type FakeWechat, type WechatAccount } from '../support/fake-wechat.js';
import { pushToWeibo, startFakeWeibo, weiboPushBody, type FakeWeibo } from '../support/fake-weibo.js';
import { makeUpdate, postWebhook, startFakeTelegram, type FakeTelegram } from '../support/fake-telegram.js';

/**
 * "Status on every channel" end to end: one gateway with SMS (through the test
 * SMSC), WeChat safe mode, Weibo and Telegram (through their local fakes).
 */

const WX: WechatAccount = { token: 'wx_status_token', appId: 'wx5823bf96d3bd56c7', aesKey: 'jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C', ghId: 'gh_12345test' };
const WX_SECRET = 'app-secret-for-tests';
const WEIBO_SECRET = 'weibo-app-secret-xyz123';
const WEIBO_TOKEN = 'weibo-access-token-abc';
const TG_TOKEN = '123456789:AAtest-token_for-the-fake-bot-api';
const TG_SECRET = 'webhook-secret_0123456789';
const UNKNOWN = '20991231-999999';

/** One way to reach the gateway as a citizen, and to read what it answered. */
interface Driver {
  channel: Channel;
  newCitizen(): string;
  /** Sends `text`; `again` repeats an earlier upstream message exactly (a redelivery). */
  send(citizen: string, text: string, again?: unknown): Promise<unknown>;
  /** Everything the gateway said to the citizen so far, oldest first. */
  answers(citizen: string): string[];
}

for (const storeKind of ['sqlite', 'postgres'] as StoreChoice[]) {
  describe(`status query on every message channel (end to end, ${storeKind} store)`, function () {
    this.timeout(120_000);
    let smsc: TestSmsc;
    let gateway: TestGateway;
    let wx: FakeWechat;
    let wb: FakeWeibo;
    let tgm: FakeTelegram;
    const passive = new Map<string, string[]>();
    let seq = 0;

    before(async () => {
      [wx, wb, tgm] = await Promise.all([
        startFakeWechat({ appId: WX.appId, appSecret: WX_SECRET }),
        startFakeWeibo({ accessToken: WEIBO_TOKEN }),
        startFakeTelegram({ token: TG_TOKEN }),
      ]);
      smsc = await TestSmsc.start();
      gateway = await startTestGateway({
        SMPP_URL: smsc.url,
        ...FAST,
        WECHAT_TOKEN: WX.token,
        WECHAT_APP_ID: WX.appId,
        WECHAT_APP_SECRET: WX_SECRET,
        WECHAT_ENCODING_AES_KEY: WX.aesKey,
        WECHAT_API_URL: wx.url,
        WEIBO_APP_SECRET: WEIBO_SECRET,
        WEIBO_ACCESS_TOKEN: WEIBO_TOKEN,
        WEIBO_API_URL: wb.url,
        TELEGRAM_BOT_TOKEN: TG_TOKEN,
        TELEGRAM_WEBHOOK_SECRET: TG_SECRET,
        TELEGRAM_API_URL: tgm.url,
        SEND_MAX_ATTEMPTS: 3,
      }, { storeKind });
      await smsc.waitForBind();
    });
    after(async () => {
      await gateway?.stop();
      await smsc?.close();
      await Promise.all([wx?.close(), wb?.close(), tgm?.close()]);
    });

    const gw = () => gateway;

    const drivers: Driver[] = [
      {
        channel: 'sms',
        newCitizen: () => nextPhone(),
        // SMPP has no message id: the same bytes from the same sender are the redelivery.
        send: async (from, text) => expect(await smsc.deliverText(text, { from })).to.equal(0),
        answers: (phone) => smsc.messages().filter((m) => m.destination === phone).map((m) => m.text),
      },
      {
        channel: 'wechat',
        newCitizen: () => `oStatus_${Date.now().toString(36)}_${seq++}`,
        send: async (openid, text, again) => {
          const xml = (again as string | undefined) ?? textMessage(openid, text, nextMsgId(), WX.ghId);
          const r = await pushToWechat(gw().baseUrl, WX, xml);
          expect(r.status).to.equal(200);
          if (r.reply?.Content) passive.set(openid, [...(passive.get(openid) ?? []), r.reply.Content]);
          return xml;
        },
        answers: (openid) => passive.get(openid) ?? [],
      },
      {
        channel: 'weibo',
        newCitizen: () => String(5_000_000_000_000_000n + BigInt(Date.now() % 1_000_000) * 100n + BigInt(seq++)),
        send: async (uid, text, again) => {
          const body = (again as string | undefined) ?? weiboPushBody({ type: 'text', senderId: uid, text });
          expect((await pushToWeibo(gw().baseUrl, WEIBO_SECRET, body)).status).to.equal(200);
          return body;
        },
        answers: (uid) => wb.replies.filter((r) => r.receiverId === uid).map((r) => String(r.data.text)),
      },
      {
        channel: 'telegram',
        newCitizen: () => String(4_100_000_000_000 + (Date.now() % 1_000_000) * 100 + seq++),
        send: async (id, text, again) => {
          const update = (again as Record<string, unknown> | undefined) ?? makeUpdate({ text }, { userId: Number(id) });
          expect((await postWebhook(gw().baseUrl, TG_SECRET, update)).status).to.equal(200);
          return update;
        },
        answers: (id) => tgm.sent.filter((s) => s.chatId === id).map((s) => s.text),
      },
    ];

    const nthAnswer = async (d: Driver, citizen: string, n: number): Promise<string> => {
      await waitUntil(() => d.answers(citizen).length > n, 15_000, `answer ${n + 1} on ${d.channel}`);
      return d.answers(citizen)[n]!;
    };
    const created = (channel: Channel, pred: (content: string) => boolean) => (m: Received) => m.body.channel === channel && pred(String(m.body.content));

    for (const d of drivers) {
      describe(d.channel, () => {
        let owner: string;
        let ticket: { id: string; number: string };

        before(async () => {
          owner = d.newCitizen();
          const mark = `s${Date.now().toString(36)}${seq++}`;
          await d.send(owner, `小区东门路灯不亮已经三天了 ${mark}`);
          const [m] = await gw().created.waitFor(created(d.channel, (c) => c.includes(mark)));
          ticket = m!.body;
          expect(await nthAnswer(d, owner, 0), 'receipt').to.contain(ticket.number);
        });

        it('own ticket: the state and time left on the channel, no ticket, no intake.rejected; a redelivery is answered once', async () => {
          const query = `查询 ${ticket.number}`;
          const first = await d.send(owner, query);
          const answer = await nthAnswer(d, owner, 1);
          expect(answer).to.match(new RegExp(`^【12345】工单${ticket.number}：已受理，正在办理，距答复期限还有(\\d+分钟|不到1分钟)。$`));
          await d.send(owner, query, first);
          expect(await gw().created.settle(created(d.channel, (c) => c.includes(ticket.number)), 1500)).to.have.length(0);
          expect(gw().rejected.messages.filter((m) => m.body.channel === d.channel)).to.have.length(0);
          // WeChat answers a retried push in the HTTP reply again (the platform shows one); the others send once.
          if (d.channel !== 'wechat') expect(d.answers(owner)).to.have.length(2);
        });

        it("another citizen's number and an unknown number get the same answer", async () => {
          const other = d.newCitizen();
          await d.send(other, `status ${ticket.number}`);
          const theirs = await nthAnswer(d, other, 0);
          await d.send(other, UNKNOWN);
          const unknown = await nthAnswer(d, other, 1);
          expect(theirs).to.equal(statusNotFoundText(ticket.number));
          expect(unknown).to.equal(statusNotFoundText(UNKNOWN));
          expect(theirs.replace(ticket.number, 'N')).to.equal(unknown.replace(UNKNOWN, 'N'));
          expect(await gw().created.settle(created(d.channel, (c) => c.includes(UNKNOWN) || c.includes(ticket.number)), 500)).to.have.length(0);
        });

        it('a number inside a sentence is an ordinary message: it becomes a ticket', async () => {
          const text = `${ticket.number} 号工单还没人处理，我要投诉`;
          await d.send(owner, text);
          const [m] = await gw().created.waitFor(created(d.channel, (c) => c === text));
          expect(m!.body.number).to.not.equal(ticket.number);
        });

        it('after a reply: 已答复 and the latest reply', async () => {
          const text = `路灯已于今日修复，感谢反映（${d.channel}）`;
          expect((await gw().post(`/api/v1/tickets/${ticket.id}/replies`, { replyId: 'r1', text })).status).to.equal(202);
          await gw().events.waitFor((e) => e.routingKey === `ticket.responded.${d.channel}` && e.body.ticketId === ticket.id);
          const before = d.answers(owner).length;
          await d.send(owner, `Status：${ticket.number}`);
          // WeChat's reply went by the customer-service API, not into the passive answers.
          const answered = () => d.answers(owner).slice(before).find((a) => a.includes('已答复'));
          await waitUntil(() => answered() !== undefined, 15_000, 'status answer');
          expect(answered()).to.equal(`【12345】工单${ticket.number}：已答复。最新答复：${text}`);
        });
      });
    }
  });
}
