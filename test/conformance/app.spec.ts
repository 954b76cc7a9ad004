import { runConformance } from './suite.js';
import { startTestGateway } from '../support/gateway.js';

runConformance({
  channel: 'app',
  async setup(store) {
    const tg = await startTestGateway({}, { storeKind: store });
    return { tg, ctx: tg };
  },
  async send(tg, marker) {
    const r = await tg.post('/api/v1/tickets', { clientMessageId: marker, citizen: { phone: '13800138000' }, content: `路灯坏了 ${marker}` });
    return { acked: r.status === 202 };
  },
  async resend(tg, marker) {
    const r = await tg.post('/api/v1/tickets', { clientMessageId: marker, citizen: { phone: '13800138000' }, content: `路灯坏了 ${marker}` });
    return { acked: r.status === 200 };
  },
  async sendBad(tg) {
    const r = await tg.post('/api/v1/tickets', '{"clientMessageId": "x", "content": ');
    return { httpStatus: r.status };
  },
  async teardown() {},
});
