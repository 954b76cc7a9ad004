import { runConformance } from './suite.js';
import { startTestGateway } from '../support/gateway.js';
import { nextMsgId, pushToWechat, startFakeWechat, textMessage, wechatXml, type FakeWechat, type WechatAccount } from '../support/fake-wechat.js';

// WeChat official account in safe mode: "acked" is an HTTP 200 carrying the
// encrypted passive reply (which names the ticket number); a retry is the same MsgId.
const account: WechatAccount = { token: 'conformance-token', appId: 'wx5823bf96d3bd56c7', aesKey: 'jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C', ghId: 'gh_conformance' };

interface Ctx {
  fake: FakeWechat;
  baseUrl: () => string;
  xmlFor: Map<string, string>;
}

runConformance<Ctx>({
  channel: 'wechat',
  async setup(store) {
    const fake = await startFakeWechat({ appId: account.appId, appSecret: 'secret' });
    const tg = await startTestGateway({
      WECHAT_TOKEN: account.token,
      WECHAT_APP_ID: account.appId,
      WECHAT_APP_SECRET: 'secret',
      WECHAT_ENCODING_AES_KEY: account.aesKey,
      WECHAT_API_URL: fake.url,
    }, { storeKind: store });
    return { tg, ctx: { fake, baseUrl: () => tg.baseUrl, xmlFor: new Map() } };
  },
  async send(ctx, marker) {
    const xml = textMessage('oConformance', `路灯坏了 ${marker}`, nextMsgId(), account.ghId);
    ctx.xmlFor.set(marker, xml);
    const r = await pushToWechat(ctx.baseUrl(), account, xml);
    return { acked: r.status === 200 && r.replySignatureOk === true && /\d{8}-\d{6}/.test(r.reply?.Content ?? '') };
  },
  async resend(ctx, marker) {
    const r = await pushToWechat(ctx.baseUrl(), account, ctx.xmlFor.get(marker)!);
    return { acked: r.status === 200 && /\d{8}-\d{6}/.test(r.reply?.Content ?? '') };
  },
  async sendBad(ctx) {
    // Signed and encrypted correctly, but a MsgType WeChat may add later: recorded as rejected.
    const xml = wechatXml({ ToUserName: account.ghId!, FromUserName: 'oConformance', CreateTime: Math.floor(Date.now() / 1000), MsgType: 'hologram', MsgId: BigInt(nextMsgId()) });
    await pushToWechat(ctx.baseUrl(), account, xml);
    return {};
  },
  async teardown(ctx) {
    await ctx.fake.close();
  },
});
