import { runConformance } from './suite.js';
import { startTestGateway, waitUntil } from '../support/gateway.js';
import { makeUpdate, postWebhook, startFakeTelegram, type FakeTelegram } from '../support/fake-telegram.js';

const TOKEN = '42:conformance-bot-token';
const SECRET = 'conformance-secret';

interface Ctx {
  fake: FakeTelegram;
  baseUrl: () => string;
  updateFor: Map<string, Record<string, unknown>>;
}

// Webhook mode: "acked" is the 200 answer; Telegram redelivers the same update_id after anything else.
runConformance<Ctx>({
  channel: 'telegram',
  async setup(store) {
    const fake = await startFakeTelegram({ token: TOKEN });
    const tg = await startTestGateway({ TELEGRAM_BOT_TOKEN: TOKEN, TELEGRAM_WEBHOOK_SECRET: SECRET, TELEGRAM_API_URL: fake.url }, { storeKind: store });
    return { tg, ctx: { fake, baseUrl: () => tg.baseUrl, updateFor: new Map() } };
  },
  async send(ctx, marker) {
    const u = makeUpdate({ text: `路灯坏了 ${marker}` });
    ctx.updateFor.set(marker, u);
    return { acked: (await postWebhook(ctx.baseUrl(), SECRET, u)).status === 200 };
  },
  async resend(ctx, marker) {
    return { acked: (await postWebhook(ctx.baseUrl(), SECRET, ctx.updateFor.get(marker)!)).status === 200 };
  },
  async sendBad(ctx) {
    return { httpStatus: (await postWebhook(ctx.baseUrl(), 'not-the-secret', makeUpdate({ text: 'forged' }))).status };
  },
  async teardown(ctx) {
    await ctx.fake.close();
  },
});

// Polling mode: "acked" is Telegram seeing a getUpdates offset above the update_id,
// which confirms (and drops) the update on Telegram's side.
runConformance<Ctx>({
  channel: 'telegram',
  async setup(store) {
    const fake = await startFakeTelegram({ token: TOKEN, maxPollSeconds: 1 });
    const tg = await startTestGateway({ TELEGRAM_BOT_TOKEN: TOKEN, TELEGRAM_API_URL: fake.url, TELEGRAM_POLL_TIMEOUT: '1s' }, { storeKind: store });
    return { tg, ctx: { fake, baseUrl: () => tg.baseUrl, updateFor: new Map() } };
  },
  async send(ctx, marker) {
    const u = makeUpdate({ text: `路灯坏了 ${marker}` });
    ctx.updateFor.set(marker, u);
    ctx.fake.pushUpdate(u);
    const id = u.update_id as number;
    await waitUntil(() => ctx.fake.offsets.some((o) => o !== null && o > id), 15_000, 'offset confirmation');
    return { acked: true };
  },
  async resend(ctx, marker) {
    // Telegram redelivers an update that was never confirmed: push it again.
    const u = ctx.updateFor.get(marker)!;
    const before = ctx.fake.offsets.length;
    ctx.fake.pushUpdate(u);
    await waitUntil(() => ctx.fake.pending().length === 0 && ctx.fake.offsets.length > before, 15_000, 'redelivery confirmed');
    return { acked: true };
  },
  async sendBad(ctx) {
    ctx.fake.pushUpdate(makeUpdate({ sticker: { file_id: 'x' } }));
    return {};
  },
  async teardown(ctx) {
    await ctx.fake.close();
  },
});
