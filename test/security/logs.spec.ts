import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { Writable } from 'node:stream';
import fc from 'fast-check';
import { projectRoot } from '../../src/config.js';
import { createLogger, maskPII } from '../../src/log.js';
import { spawnGateway, tempDir, type GatewayProcess } from '../support/gateway.js';
import { createVhost, type Vhost } from '../support/rabbit.js';
import { fcParams } from '../fuzz/runs.js';

/**
 * Contract section 5: logs carry no phone number or e-mail address in clear,
 * internationalised addresses included, in any field; no configuration message
 * and no log line repeats a password, token or API key.
 */

function capture(): { lines: () => string; stream: Writable } {
  let out = '';
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      out += chunk.toString('utf8');
      done();
    },
  });
  return { lines: () => out, stream };
}

/** `node --import tsx src/main.ts` with only `env`; resolves with its exit code and everything it printed. */
function runMain(env: Record<string, string>): Promise<{ code: number | string; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      cwd: projectRoot(),
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? signal ?? -1, output });
    });
  });
}

const EX_CONFIG = 78;

describe('security: logs and configuration messages keep secrets and personal data out', function () {
  this.timeout(60_000);
  const dirs: string[] = [];
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  const dataDir = () => {
    const d = tempDir('sec-');
    dirs.push(d);
    return d;
  };

  it('maskPII: internationalised addresses are masked like ASCII ones (张三@例子.中国 → 张***@例子.中国)', () => {
    expect(maskPII('来信人 张三@例子.中国，请回复')).to.equal('来信人 张***@例子.中国，请回复');
    expect(maskPII('from zhang.san@example.cn')).to.equal('from z***@example.cn');
    expect(maskPII('李四＠政务。中国')).to.equal('李***@政务。中国');
    expect(maskPII('wang@xn--fiqs8s.xn--fiqs8s')).to.equal('w***@xn--fiqs8s.xn--fiqs8s');
    expect(maskPII('müller@bücher.de 13800138000')).to.equal('m***@bücher.de 138****8000');
  });

  it('maskPII: any Unicode local part at any IDN or ASCII domain keeps only its first character', () => {
    const letters = [...'张三李四王五赵六abcXYZ019éßжДاب'];
    const local = fc.array(fc.constantFrom(...letters, '.', '_', '+', '-'), { minLength: 2, maxLength: 20 }).map((a) => a.join('')).filter((s) => /^[\p{L}\p{N}]/u.test(s));
    const label = fc.array(fc.constantFrom(...'例子政务中国abcde0-'), { minLength: 1, maxLength: 10 }).map((a) => a.join(''));
    const tld = fc.oneof(fc.constantFrom('中国', 'cn', 'com', '公司', 'xn--fiqs8s'));
    fc.assert(
      fc.property(local, fc.array(label, { minLength: 1, maxLength: 3 }), tld, fc.constantFrom(' ', '：', '\n', '"'), (l, labels, t, sep) => {
        const domain = `${[...labels, t].join('.')}`;
        const masked = maskPII(`联系${sep}${l}@${domain}${sep}谢谢`);
        expect(masked).not.to.contain(`${l}@`);
        expect(masked).to.contain(`${String.fromCodePoint(l.codePointAt(0)!)}***@`);
      }),
      fcParams(),
    );
  });

  it('maskPII: a phone number is masked in every shape a log line holds it, Chinese text around it included', () => {
    const cases: [string, string][] = [
      ['13812345678', '138****5678'],
      ['+8613812345678', '+86138****5678'],
      ['8613812345678', '86138****5678'],
      ['+86-13812345678', '+86-138****5678'],
      ['+86 13812345678', '+86 138****5678'],
      ['{"phone":"13812345678"}', '{"phone":"138****5678"}'],
      ['tel:13812345678', 'tel:138****5678'],
      ['phone=13812345678&x=1', 'phone=138****5678&x=1'],
      ['from:13812345678', 'from:138****5678'],
      ['电话13812345678请回电', '电话138****5678请回电'],
      ['手机：+8613812345678。', '手机：+86138****5678。'],
      ['13812345678、13912345678/13712345678', '138****5678、139****5678/137****5678'],
      // A word written against a number does not make it an id.
      ['tel13812345678', 'tel138****5678'],
      ['TEL13812345678', 'TEL138****5678'],
      ['加vx13812345678', '加vx138****5678'],
      ['phone13812345678', 'phone138****5678'],
      ['mobile8613812345678', 'mobile86138****5678'],
      ['13812345678ext', '138****5678ext'],
      ['+8613812345678abc', '+86138****5678abc'],
      // Hex-looking words are words too, unless the run has an id's shape.
      ['add13812345678', 'add138****5678'],
      ['acc13812345678', 'acc138****5678'],
      ['key:b13812345678', 'key:b138****5678'],
      // The 0086 of an international call, and the groups people type.
      ['008613812345678', '0086138****5678'],
      ['0086 13812345678', '0086 138****5678'],
      ['138 1234 5678', '138****5678'],
      ['138-1234-5678', '138****5678'],
      ['+86 138 1234 5678', '+86 138****5678'],
      ['手机：138 1234 5678。', '手机：138****5678。'],
      // Full-width digits, as a Chinese IME may leave them.
      ['电话：１３８１２３４５６７８', '电话：１３８****５６７８'],
      ['＋８６１３８１２３４５６７８', '＋８６１３８****５６７８'],
    ];
    for (const [text, masked] of cases) expect(maskPII(text), text).to.equal(masked);
    expect(maskPII('zhang13812345678@163.com')).to.equal('z***@163.com');
  });

  it('maskPII: eleven digits inside an id (a UUID group, a hex digest, letters on both sides) stay as they are', () => {
    for (const id of [
      'c23614ae-7f1d-5b2e-9c4a-b13812345678',
      'c23614ae-7f1d-5b2e-9c4a-13812345678b',
      'C23614AE-7F1D-5B2E-9C4A-B13812345678',
      'deadbeef13812345678cafe0000000000000000',
      '13812345678abcdef0123456789abcdef0123456',
      'a13812345678f',
      'x13812345678y',
      'k9X8613812345678Qz',
    ]) {
      expect(maskPII(id), id).to.equal(id);
      expect(maskPII(`messageId=${id} from 13900139000`), id).to.equal(`messageId=${id} from 139****9000`);
    }
  });

  it('maskPII: any mainland mobile number between anything but ASCII letters and digits is masked; inside a hex id it is not', () => {
    const number = fc.tuple(fc.constantFrom(...'3456789'), fc.stringMatching(/^\d{9}$/)).map(([d, rest]) => `1${d}${rest}`);
    const prefix = fc.constantFrom('', '+86', '86', '+86 ', '+86-', '0086', '0086 ');
    const sep = fc.constantFrom('', ' ', '-');
    const around = fc.constantFrom(' ', '"', ':', '：', '=', '，', '。', '(', ')', '/', '\n', '电话', '请回电', '手机号', '號碼', 'tel:', '<', '>', '');
    fc.assert(
      fc.property(number, prefix, sep, around, around, (n, p, g, before, after) => {
        const masked = maskPII(`${before}${p}${n.slice(0, 3)}${g}${n.slice(3, 7)}${g}${n.slice(7)}${after}`);
        expect(masked).to.equal(`${before}${p}${n.slice(0, 3)}****${n.slice(7)}${after}`);
      }),
      fcParams(),
    );
    const hex = fc.constantFrom(...'abcdefABCDEF');
    fc.assert(
      fc.property(number, hex, fc.boolean(), (n, letter, letterFirst) => {
        const id = `0f3c9a1e-2b7d-4c8e-9a6f-${letterFirst ? letter + n : n + letter}`;
        expect(maskPII(`{"messageId":"${id}"}`)).to.equal(`{"messageId":"${id}"}`);
      }),
      fcParams(),
    );
  });

  it('every log field is masked: nested objects, arrays, error messages and causes, child bindings, interpolation, deep values', () => {
    const c = capture();
    const log = createLogger('info', c.stream);
    let deep: Record<string, unknown> = { email: '王五@例子.中国' };
    for (let i = 0; i < 12; i++) deep = { deep };
    const err = new Error('send to 张三@例子.中国 failed', { cause: new Error('broker amqp://admin:Sup3rS3cret@mq.example.cn refused 13900139000') });
    log.child({ citizen: '李四@例子.中国' }).warn(
      { ticket: { citizen: { emails: ['张三@例子.中国'], phone: '+8613800138000' } }, err, deep },
      'reply to %s failed: %j',
      '赵六@例子.中国',
      { to: '钱七@例子.中国' },
    );
    const out = c.lines();
    for (const clear of ['张三@', '李四@', '王五@', '赵六@', '钱七@', '13800138000', '13900139000', 'Sup3rS3cret']) expect(out, clear).not.to.contain(clear);
    for (const masked of ['张***@例子.中国', '李***@例子.中国', '赵***@例子.中国', '钱***@例子.中国', '+86138****8000', 'admin:***@mq.example.cn']) expect(out).to.contain(masked);
  });

  it('the real gateway process with a mistyped AMQP_URL names the key, prints no password and exits with EX_CONFIG (78)', async () => {
    const { code, output } = await runMain({ AMQP_URL: 'amqp//admin:Sup3rS3cret@host:5672', DATA_DIR: dataDir(), LOG_LEVEL: 'info' });
    expect(code).to.equal(EX_CONFIG);
    expect(output).to.contain('AMQP_URL');
    expect(output).to.contain('expected an amqp:// or amqps:// URL');
    expect(output).not.to.contain('Sup3rS3cret');
  });

  it('the real gateway process with several bad settings shows client names but no API key, token or secret', async () => {
    const { code, output } = await runMain({
      AMQP_URL: 'amqp:/admin:Sup3rS3cret@host',
      APP_API_KEYS: 'mobile:AppK3ySecret,webform',
      WEIBO_APP_SECRET: 'Weib0Secret',
      DATABASE_URL: 'postgres//gw:Pg5ecret@db/gw',
      HTTP_PORT: 'eighty',
      DATA_DIR: dataDir(),
    });
    expect(code).to.equal(EX_CONFIG);
    expect(output).to.contain('APP_API_KEYS');
    expect(output).to.contain('mobile:***');
    for (const s of ['Sup3rS3cret', 'AppK3ySecret', 'webform', 'Weib0Secret', 'Pg5ecret']) expect(output, s).not.to.contain(s);
  });

  describe('a running gateway process', () => {
    let vhost: Vhost;
    let proc: GatewayProcess | undefined;
    before(async () => {
      vhost = await createVhost('sec');
    });
    after(async () => {
      proc?.kill('SIGKILL');
      await vhost?.drop();
    });

    it('logs its configuration and a citizen ticket without the broker password, API keys or an e-mail address', async () => {
      proc = await spawnGateway({
        AMQP_URL: vhost.url,
        DATA_DIR: dataDir(),
        APP_API_KEYS: 'mobile:AppK3ySecret-0123456789',
        MAILBOX_ADDRESS: 'mayor.office@gov.example.cn',
        STORE_SYNC: 'normal',
      });
      const res = await fetch(`${proc.baseUrl}/api/v1/tickets`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Bearer AppK3ySecret-0123456789' },
        body: JSON.stringify({ clientMessageId: 'sec-log-1', citizen: { email: 'zhang.san@citizen.example.cn', phone: '13800138000', name: '张三' }, content: '路灯坏了' }),
      });
      expect(res.status).to.equal(202);
      proc.kill('SIGTERM');
      expect(await proc.exited).to.equal(0);
      const out = proc.output();
      expect(out).to.contain('"APP_API_KEYS":"mobile:***"');
      expect(out).to.contain('m***@gov.example.cn');
      expect(out).to.contain('guest:***@');
      for (const s of ['AppK3ySecret', 'guest:guest', 'mayor.office@', 'zhang.san@', '13800138000']) expect(out, s).not.to.contain(s);
    });
  });
});
