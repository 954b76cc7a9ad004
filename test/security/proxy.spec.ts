import { expect } from 'chai';
import { loadConfig } from '../../src/config.js';
import { GatewayError } from '../../src/errors.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';

/**
 * Behind a reverse proxy: `X-Forwarded-For` is believed only from the peers in
 * TRUST_PROXY, and the web form's per-IP limit (FORM_RATE_LIMIT) counts the
 * client address that results. The test client connects from 127.0.0.1.
 */

/** Statuses of bare POST /mailbox calls: the limit is checked before anything else (415 for no body). */
async function postForm(baseUrl: string, forwardedFor: string): Promise<number> {
  const r = await fetch(`${baseUrl}/mailbox`, { method: 'POST', headers: { 'X-Forwarded-For': forwardedFor } });
  await r.text();
  return r.status;
}

describe('security: X-Forwarded-For and TRUST_PROXY', function () {
  this.timeout(60_000);
  let tg: TestGateway;

  before(async () => {
    tg = await startTestGateway({ FORM_RATE_LIMIT: 2, TRUST_PROXY: '127.0.0.1' });
  });
  after(async () => {
    await tg?.stop();
  });

  it('from a trusted proxy, two citizens behind it get separate per-IP buckets', async () => {
    const a = [await postForm(tg.baseUrl, '203.0.113.10'), await postForm(tg.baseUrl, '203.0.113.10'), await postForm(tg.baseUrl, '203.0.113.10')];
    expect(a.slice(0, 2)).not.to.include(429);
    expect(a[2]).to.equal(429);
    // The proxy appends the peer it saw; the rightmost address not in TRUST_PROXY
    // counts, so an address a citizen prepends does not choose the bucket.
    expect(await postForm(tg.baseUrl, '203.0.113.20')).not.to.equal(429);
    expect(await postForm(tg.baseUrl, '198.51.100.7, 203.0.113.20')).not.to.equal(429);
  });

  it('a CIDR names the proxy too', async () => {
    await tg.restart({ TRUST_PROXY: '10.0.0.0/8, 127.0.0.0/8' });
    for (let i = 0; i < 2; i++) expect(await postForm(tg.baseUrl, '203.0.113.30')).not.to.equal(429);
    expect(await postForm(tg.baseUrl, '203.0.113.30')).to.equal(429);
    expect(await postForm(tg.baseUrl, '203.0.113.31')).not.to.equal(429);
  });

  it('from a peer not in TRUST_PROXY the header is ignored: every forged address shares the peer bucket', async () => {
    await tg.restart({ TRUST_PROXY: '10.0.0.1' });
    expect(await postForm(tg.baseUrl, '203.0.113.40')).not.to.equal(429);
    expect(await postForm(tg.baseUrl, '203.0.113.41')).not.to.equal(429);
    expect(await postForm(tg.baseUrl, '203.0.113.42')).to.equal(429);
  });

  it('TRUST_PROXY is validated at start: a value that is not an IP, a CIDR or a known name names the key', () => {
    for (const bad of ['proxy.example', '10.0.0.0/33', '127.0.0.1/', '::1/129', '10.0.0.0/255.0.0.0', 'true']) {
      let err: unknown;
      try {
        loadConfig({}, { TRUST_PROXY: bad });
      } catch (e) {
        err = e;
      }
      expect(err, bad).to.be.instanceOf(GatewayError);
      expect((err as GatewayError).code).to.equal('CONFIG_INVALID');
      expect((err as GatewayError).message).to.contain('TRUST_PROXY');
    }
    expect(loadConfig({}, {}).TRUST_PROXY).to.deep.equal(['loopback']);
    expect(loadConfig({}, { TRUST_PROXY: ' 10.0.0.1, fd00::/8 ,loopback' }).TRUST_PROXY).to.deep.equal(['10.0.0.1', 'fd00::/8', 'loopback']);
    expect(loadConfig({}, { TRUST_PROXY: '' }).TRUST_PROXY).to.deep.equal([]);
  });
});
