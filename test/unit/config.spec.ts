import { expect } from 'chai';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig, describeConfig, redactConfigMessage } from '../../src/config.js';
import { GatewayError } from '../../src/errors.js';
import { parseDuration, isoDuration } from '../../src/duration.js';
import { tempDir } from '../support/gateway.js';

/** The message of the CONFIG_INVALID error loading `env` throws. */
function configError(env: Record<string, string>): string {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).to.be.instanceOf(GatewayError);
    expect((err as GatewayError).code).to.equal('CONFIG_INVALID');
    return (err as GatewayError).message;
  }
  throw new Error('configuration was accepted');
}

describe('config', () => {
  const dirs: string[] = [];
  const cfgDir = () => {
    const d = tempDir('cfg-');
    dirs.push(d);
    return d;
  };
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('has working defaults from config/default.json', () => {
    const c = loadConfig({});
    expect(c.HTTP_PORT).to.equal(8080);
    expect(c.DEADLINE_MESSAGE).to.equal(180_000);
    expect(c.DEADLINE_MAILBOX).to.equal(86_400_000);
    expect(c.SMPP_URL).to.equal(undefined);
    expect(c.APP_API_KEYS.size).to.equal(0);
  });

  it('layers default.json ← GATEWAY_CONFIG file ← environment', () => {
    const dir = cfgDir();
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
    expect(() => loadConfig({ APP_API_KEYS: 'mobile:k3y-0123456789,broken' })).to.throw(/APP_API_KEYS = "mobile:\*\*\*,\*\*\*": expected comma-separated/);
  });

  it('rejects unknown keys in a config file', () => {
    const dir = cfgDir();
    const file = join(dir, 'gw.json');
    writeFileSync(file, JSON.stringify({ HTTP_PROT: 1 }));
    expect(() => loadConfig({ GATEWAY_CONFIG: file })).to.throw(/unknown setting HTTP_PROT/);
  });

  it('a mistyped broker URL: the error names AMQP_URL and what is allowed, never the password', () => {
    const msg = configError({ AMQP_URL: 'amqp//admin:Sup3rS3cret@host:5672' });
    expect(msg).to.contain('AMQP_URL');
    expect(msg).to.contain('expected an amqp:// or amqps:// URL');
    expect(msg).to.contain('admin:***@host:5672');
    expect(msg).not.to.contain('Sup3rS3cret');
  });

  it('hides credentials in configuration errors whatever the shape of the value', () => {
    const secrets: [string, string, string][] = [
      ['AMQP_URL', 'amqp:/admin:Sup3rS3cret@host', 'Sup3rS3cret'],
      ['AMQP_URL', 'admin:Sup3rS3cret@host:5672', 'Sup3rS3cret'],
      ['AMQP_URL', 'http://admin:Sup3r/S3cret@host', 'S3cret'],
      ['AMQP_URL', 'http://admin:p@ss@host', 'p@ss'],
      ['AMQP_URL', 'host:5672?password=Sup3rS3cret&x=1', 'Sup3rS3cret'],
      ['DATABASE_URL', 'mysql://app:Sup3rS3cret@db/x', 'Sup3rS3cret'],
      ['SMTP_URL', 'smtp//relay:Sup3rS3cret@mail.example.cn', 'Sup3rS3cret'],
      ['IMAP_URL', 'imap://Sup3rS3cretToken@mail.example.cn:143x', 'Sup3rS3cretToken'],
      ['TELEGRAM_API_URL', 'api.telegram.org?token=Sup3rS3cret', 'Sup3rS3cret'],
      ['WEIBO_API_URL', '{"secret": "Sup3rS3cret"}', 'Sup3rS3cret'],
    ];
    for (const [key, value, secret] of secrets) {
      const msg = configError({ [key]: value });
      expect(msg, `${key}=${value}`).to.contain(key);
      expect(msg, `${key}=${value}`).not.to.contain(secret);
    }
  });

  it('names the clients of an API key list, never their keys; secret settings show as ***', () => {
    const msg = configError({ APP_API_KEYS: 'mobile:Sup3rS3cretKey, web:An0therS3cret, :orphanS3cret', WECHAT_APP_SECRET: 'wxS3cret', HTTP_PORT: 'x' });
    expect(msg).to.contain('mobile:***');
    expect(msg).to.contain('web:***');
    for (const s of ['Sup3rS3cretKey', 'An0therS3cret', 'orphanS3cret', 'wxS3cret']) expect(msg).not.to.contain(s);
  });

  it('a config file that is not JSON: the excerpt the JSON parser quotes shows no secret', () => {
    const file = join(cfgDir(), 'gw.json');
    writeFileSync(file, '{"WECHAT_APP_SECRET": "wxS3cretValue", "AMQP_URL": amqp://admin:Sup3rS3cret@host}');
    const msg = configError({ GATEWAY_CONFIG: file });
    expect(msg).to.contain('is not a JSON object');
    expect(msg).not.to.contain('Sup3rS3cret');
    expect(msg).not.to.contain('wxS3cretValue');
  });

  it('redactConfigMessage hides known secret values wherever a message quotes them', () => {
    const c = loadConfig({ APP_API_KEYS: 'mobile:Sup3rS3cretKey', TELEGRAM_BOT_TOKEN: '123:tgS3cretToken' });
    const msg = redactConfigMessage('telegram refused 123:tgS3cretToken; client key Sup3rS3cretKey', c);
    expect(msg).not.to.contain('tgS3cretToken');
    expect(msg).not.to.contain('Sup3rS3cretKey');
  });

  it('never shows secrets or URL passwords when described for the log', () => {
    const c = loadConfig({ APP_API_KEYS: 'app:supersecret', AMQP_URL: 'amqp://user:pw123@host:5672/v', WECHAT_APP_SECRET: 'wxsecret' });
    const text = JSON.stringify(describeConfig(c));
    expect(text).not.to.contain('supersecret');
    expect(text).not.to.contain('pw123');
    expect(text).not.to.contain('wxsecret');
    expect(describeConfig(c).APP_API_KEYS).to.equal('app:***');
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
