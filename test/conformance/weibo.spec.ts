import { runConformance } from './suite.js';
import { startTestGateway } from '../support/gateway.js';
import { pushToWeibo, startFakeWeibo, weiboPushBody, type FakeWeibo } from '../support/fake-weibo.js';

// Weibo fans service: "acked" is the empty 200 answer to the push; a retry is the same body.
const SECRET = 'conformance-weibo-secret';

interface Ctx {
  fake: FakeWeibo;
  baseUrl: () => string;
  bodyFor: Map<string, string>;
}

let uid = 9_007_199_254_800_001n;

runConformance<Ctx>({
  channel: 'weibo',
  async setup(store) {
    const fake = await startFakeWeibo({ accessToken: 'tok' });
    const tg = await startTestGateway({ WEIBO_APP_SECRET: SECRET, WEIBO_ACCESS_TOKEN: 'tok', WEIBO_API_URL: fake.url }, { storeKind: store });
    return { tg, ctx: { fake, baseUrl: () => tg.baseUrl, bodyFor: new Map() } };
  },
  async send(ctx, marker) {
    const body = weiboPushBody({ type: 'text', senderId: (uid += 1n).toString(), text: `路灯坏了 ${marker}` });
    ctx.bodyFor.set(marker, body);
    const r = await pushToWeibo(ctx.baseUrl(), SECRET, body);
    return { acked: r.status === 200 };
  },
  async resend(ctx, marker) {
    return { acked: (await pushToWeibo(ctx.baseUrl(), SECRET, ctx.bodyFor.get(marker)!)).status === 200 };
  },
  async sendBad(ctx) {
    const r = await pushToWeibo(ctx.baseUrl(), SECRET, weiboPushBody({ type: 'text', senderId: '1', text: 'forged' }), { badSignature: true });
    return { httpStatus: r.status };
  },
  async teardown(ctx) {
    await ctx.fake.close();
  },
});
