import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig, describeConfig } from '../../src/config.js';
import { parseDuration, isoDuration } from '../../src/duration.js';
import { tempDir } from '../support/gateway.js';

describe('config', () => {
  it('has working defaults from config/default.json', () => {
    const c = loadConfig({});
    expect(c.HTTP_PORT).to.equal(8080);
    expect(c.DEADLINE_MESSAGE).to.equal(180_000);
    expect(c.DEADLINE_MAILBOX).to.equal(86_400_000);
    expect(c.SMPP_URL).to.equal(undefined);
    expect(c.APP_API_KEYS.size).to.equal(0);
  });

  it('layers default.json ← GATEWAY_CONFIG file ← environment', () => {
    const dir = tempDir('cfg-');
    const file = join(dir, 'gw.json');
    writeFileSync(file, JSON.stringify({ HTTP_PORT: 9000, DEADLINE_MESSAGE: '5m', LOG_LEVEL: 'warn' }));
    const c = loadConfig({ GATEWAY_CONFIG: file, HTTP_PORT: '9100' });
    expect(c.HTTP_PORT).to.equal(9100);
    expect(c.DEADLINE_MESSAGE).to.equal(300_000);
    expect(c.LOG_LEVEL).to.equal('warn');
  });

  it('names the key, the value and what is allowed', () => {
    expect(() => loadConfig({ HTTP_PORT: 'http' })).to.throw(/HTTP_PORT = "http": .*number/);
    expect(() => loadConfig({ DEADLINE_WARNING_RATIO: '1.5' })).to.throw(/DEADLINE_WARNING_RATIO = "1.5"/);
    expect(() => loadConfig({ AMQP_URL: 'http://x' })).to.throw(/AMQP_URL = "http:\/\/x": expected an amqp/);
    expect(() => loadConfig({ APP_API_KEYS: 'novalue' })).to.throw(/APP_API_KEYS = "\*\*\*": expected comma-separated name:key pairs/);
  });

  it('rejects unknown keys in a config file', () => {
    const dir = tempDir('cfg-');
    const file = join(dir, 'gw.json');
    writeFileSync(file, JSON.stringify({ HTTP_PROT: 1 }));
    expect(() => loadConfig({ GATEWAY_CONFIG: file })).to.throw(/unknown setting HTTP_PROT/);
  });

  it('never shows secrets or URL passwords when described for the log', () => {
    const c = loadConfig({ APP_API_KEYS: 'app:supersecret', AMQP_URL: 'amqp://user:pw123@host:5672/v', WECHAT_APP_SECRET: 'wxsecret' });
    const text = JSON.stringify(describeConfig(c));
    expect(text).not.to.contain('supersecret');
    expect(text).not.to.contain('pw123');
    expect(text).not.to.contain('wxsecret');
  });
});

describe('durations', () => {
  it('parses the short forms and ISO 8601', () => {
    expect(parseDuration('90s')).to.equal(90_000);
    expect(parseDuration('3m')).to.equal(180_000);
    expect(parseDuration('24h')).to.equal(86_400_000);
    expect(parseDuration('2d')).to.equal(172_800_000);
    expect(parseDuration('PT3M')).to.equal(180_000);
    expect(parseDuration('P1DT2H')).to.equal(93_600_000);
    expect(parseDuration('soon')).to.equal(null);
    expect(parseDuration('P')).to.equal(null);
  });
  it('formats ISO 8601', () => {
    expect(isoDuration(180_000)).to.equal('PT3M');
    expect(isoDuration(86_400_000)).to.equal('PT24H');
    expect(isoDuration(2_000)).to.equal('PT2S');
  });
});
