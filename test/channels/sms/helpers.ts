import { TestSmsc } from '../../support/smsc.js';
import { startTestGateway, type TestGateway } from '../../support/gateway.js';
import { ensureRabbit, type Received } from '../../support/rabbit.js';
import type { ConfigInput } from '../../../src/config.js';

export const FAST: ConfigInput = { SMS_RECONNECT_MIN: '100ms', SMS_RECONNECT_MAX: '500ms', SMS_ENQUIRE_LINK: '1s' };

export interface SmsRig {
  smsc: TestSmsc;
  gw: TestGateway;
  stop(): Promise<void>;
}

/** A test SMSC and an in-process gateway bound to it. */
export async function startRig(overrides: ConfigInput = {}): Promise<SmsRig> {
  await ensureRabbit();
  const smsc = await TestSmsc.start();
  let gw: TestGateway | undefined;
  try {
    gw = await startTestGateway({ SMPP_URL: smsc.url, ...FAST, ...overrides });
    await smsc.waitForBind();
  } catch (err) {
    await gw?.stop();
    await smsc.close();
    throw err;
  }
  const g = gw;
  return {
    smsc,
    gw: g,
    async stop() {
      await g.stop();
      await smsc.close();
    },
  };
}

let n = 0;
/** A marker unique to this run, in characters every coding can carry. */
export function marker(tag = 'm'): string {
  return `${tag}${Date.now().toString(36)}${(n++).toString(36)}`;
}

/** A distinct Chinese mobile number per call, so tests never share a citizen. */
let phone = 13900000000 + Math.floor(Math.random() * 9_000_000);
export function nextPhone(): string {
  return String(phone++);
}

export const has = (text: string) => (m: Received) => m.body.channel === 'sms' && typeof m.body.content === 'string' && m.body.content.includes(text);
export const from = (addr: string) => (m: Received) => m.body.channel === 'sms' && m.body.citizen?.channelUserId === addr;
