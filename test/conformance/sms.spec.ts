import { runConformance } from './suite.js';
import { startTestGateway } from '../support/gateway.js';
import { TestSmsc } from '../support/smsc.js';

// The SMS channel over a real SMPP session: "acked" is deliver_sm_resp ESME_ROK.
runConformance<TestSmsc>({
  channel: 'sms',
  async setup(store) {
    const smsc = await TestSmsc.start();
    const tg = await startTestGateway({ SMPP_URL: smsc.url, SMS_RECONNECT_MIN: '100ms', SMS_RECONNECT_MAX: '1s' }, { storeKind: store });
    await smsc.waitForBind();
    return { tg, ctx: smsc };
  },
  async send(smsc, marker) {
    await smsc.waitForBind();
    return { acked: (await smsc.deliverText(`路灯坏了 ${marker}`)) === 0 };
  },
  async resend(smsc, marker) {
    // The SMSC retries with the very same PDU bytes.
    return { acked: (await smsc.deliverText(`路灯坏了 ${marker}`)) === 0 };
  },
  async sendBad(smsc) {
    // 8-bit binary data is not text for a person.
    await smsc.deliver({ data_coding: 4, short_message: Buffer.from([0xde, 0xad, 0xbe, 0xef]) });
    return {};
  },
  async teardown(smsc) {
    await smsc.close();
  },
});
