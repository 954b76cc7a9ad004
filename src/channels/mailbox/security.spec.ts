import { expect } from 'chai';
import { RateLimiter, checkCsrf, checkLookupCode, csrfToken, lookupCode, newNonce, readCookie } from './security.js';
import { esc, formPage, statusPage } from './pages.js';

describe('mailbox/security', () => {
  const secret = 'test-secret-0123456789';
  const id = '0f0e0d0c-0000-5000-8000-000000000001';

  it('look-up codes: stable, 8 unambiguous symbols, bound to the ticket and the key', () => {
    const code = lookupCode(secret, id);
    expect(code).to.match(/^[A-HJKMNP-Z2-9]{8}$/);
    expect(lookupCode(secret, id)).to.equal(code);
    expect(lookupCode(secret, `${id}x`)).not.to.equal(code);
    expect(lookupCode('other-secret', id)).not.to.equal(code);
    expect(checkLookupCode(secret, id, code)).to.equal(true);
    expect(checkLookupCode(secret, id, `${code.slice(0, 4).toLowerCase()}-${code.slice(4)}`)).to.equal(true);
    expect(checkLookupCode(secret, id, 'AAAAAAAA')).to.equal(code === 'AAAAAAAA');
    expect(checkLookupCode(secret, id, '')).to.equal(false);
  });

  it('CSRF: the field must be the HMAC of the cookie', () => {
    const cookie = newNonce();
    expect(checkCsrf(secret, cookie, csrfToken(secret, cookie))).to.equal(true);
    expect(checkCsrf(secret, cookie, csrfToken(secret, newNonce()))).to.equal(false);
    expect(checkCsrf(secret, undefined, csrfToken(secret, cookie))).to.equal(false);
    expect(checkCsrf(secret, cookie, undefined)).to.equal(false);
    expect(checkCsrf('other', cookie, csrfToken(secret, cookie))).to.equal(false);
    expect(readCookie('a=1; mbx_csrf=abc; b=2', 'mbx_csrf')).to.equal('abc');
    expect(readCookie(undefined, 'mbx_csrf')).to.equal(undefined);
  });

  it('rate limit: N per window per key, Retry-After until the window ends, bounded keys', () => {
    const rl = new RateLimiter(2, 60_000, 3);
    expect(rl.hit('1.1.1.1', 0)).to.equal(null);
    expect(rl.hit('1.1.1.1', 1000)).to.equal(null);
    expect(rl.hit('1.1.1.1', 2000)).to.equal(58);
    expect(rl.hit('2.2.2.2', 2000)).to.equal(null);
    expect(rl.hit('1.1.1.1', 60_000)).to.equal(null);
    for (let i = 0; i < 10; i++) rl.hit(`10.0.0.${i}`, 61_000);
    expect(rl.size).to.be.at.most(3);
  });
});

describe('mailbox/pages', () => {
  it('escapes everything the citizen typed', () => {
    expect(esc('<script>"&\'')).to.equal('&lt;script&gt;&quot;&amp;&#39;');
    const html = formPage({ values: { subject: '"><script>alert(1)</script>' }, errors: { content: '<b>x</b>' }, csrf: 'c', nonce: 'n', maxFiles: 5, maxFileSize: '10MB', mailReplies: true });
    expect(html).not.to.contain('<script>alert');
    expect(html).to.contain('&lt;b&gt;x&lt;/b&gt;');
    expect(html).to.contain('aria-invalid="true"');
    expect(html).to.contain('<html lang="zh-CN">');
    const status = statusPage({ number: '20261123-000001', subject: '<i>', content: '<img src=x onerror=1>', receivedAt: 'a', respondBy: 'b', state: '已受理', breached: false, replies: [{ text: '<u>', at: 'c' }], attachments: [] });
    expect(status).not.to.match(/<img src=x|<u>|<i>/);
  });
});
