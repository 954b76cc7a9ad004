import { expect } from 'chai';
import { pino } from 'pino';
import { WechatApi } from '../../../src/channels/wechat/api.js';
import { GatewayError } from '../../../src/errors.js';
import { startFakeWechat, type FakeWechat } from '../../support/fake-wechat.js';

describe('wechat API client (against the local API server)', () => {
  let fake: FakeWechat;
  let now = 1_800_000_000_000;
  const clock = { now: () => now };
  const make = (secret = 'secret') => new WechatApi({ baseUrl: fake.url, appId: 'wxapp', appSecret: secret, clock, logger: pino({ level: 'silent' }) });

  beforeEach(async () => {
    fake = await startFakeWechat({ appId: 'wxapp', appSecret: 'secret', tokenTtl: 7200 });
  });
  afterEach(async () => {
    await fake.close();
  });

  it('caches the token, refreshes in the background before expiry, and fetches anew after it', async () => {
    const api = make();
    const t1 = await api.accessToken();
    expect(await api.accessToken()).to.equal(t1);
    expect(fake.tokensIssued).to.equal(1);
    now += (7200 - 500) * 1000; // inside the soft window: old token still served, refresh started
    expect(await api.accessToken()).to.equal(t1);
    await new Promise((r) => setTimeout(r, 100));
    expect(fake.tokensIssued).to.equal(2);
    const t2 = await api.accessToken();
    expect(t2).not.to.equal(t1);
    now += 7200 * 1000; // past the hard limit: must wait for a new one
    expect(await api.accessToken()).not.to.equal(t2);
    expect(fake.tokensIssued).to.equal(3);
  });

  it('single-flights concurrent refreshes (a new token invalidates the old one)', async () => {
    const api = make();
    const tokens = await Promise.all(Array.from({ length: 10 }, () => api.accessToken()));
    expect(new Set(tokens).size).to.equal(1);
    expect(fake.tokensIssued).to.equal(1);
  });

  it('a wrong secret is a permanent error with the errcode in detail', async () => {
    try {
      await make('wrong').accessToken();
      expect.fail('should throw');
    } catch (err) {
      expect(err).to.be.instanceOf(GatewayError);
      expect((err as GatewayError).transient).to.equal(false);
      expect((err as GatewayError).detail).to.deep.include({ errcode: 40125 });
    }
  });

  it('sendText maps errcodes: token errors refresh once, 45015 permanent, -1 and 45009 transient', async () => {
    const api = make();
    await api.sendText('oUser', 'hi');
    fake.expireToken();
    await api.sendText('oUser', 'after expiry');
    expect(fake.sent.map((s) => s.content)).to.deep.equal(['hi', 'after expiry']);
    for (const [code, transient] of [[45015, false], [-1, true], [45009, true], [40003, false]] as const) {
      fake.sendErrors = [code];
      try {
        await api.sendText('oUser', 'x');
        expect.fail('should throw');
      } catch (err) {
        const e = err as GatewayError;
        expect(e.code).to.equal(transient ? 'SEND_TRANSIENT' : 'SEND_PERMANENT');
        expect(e.detail).to.deep.include({ errcode: code });
      }
    }
  });

  it('media over the size limit is refused, not buffered', async () => {
    const api = make();
    fake.media.set('BIG', { data: Buffer.alloc(5000), contentType: 'image/jpeg' });
    try {
      await api.fetchMedia('BIG', 1000, AbortSignal.timeout(5000));
      expect.fail('should throw');
    } catch (err) {
      expect((err as GatewayError).code).to.equal('INPUT_TOO_LARGE');
    }
    const ok = await api.fetchMedia('BIG', 10_000, AbortSignal.timeout(5000));
    expect(ok.data.length).to.equal(5000);
    expect(ok.disposition).to.contain('BIG.jpg');
  });
});
