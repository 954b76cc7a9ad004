import { expect } from 'chai';
import { join } from 'node:path';
import { cleanId, cleanLine, cleanText, htmlToText, truncate } from '../../src/normalize/text.js';
import { detectLanguage } from '../../src/normalize/language.js';
import { similarity, SAME_MATTER } from '../../src/normalize/similarity.js';
import { classify, loadRules } from '../../src/normalize/rules.js';
import { normalizePhone } from '../../src/normalize/phone.js';
import { maskPII } from '../../src/log.js';
import { projectRoot } from '../../src/config.js';

const rules = loadRules(join(projectRoot(), 'config', 'rules.json'));

describe('normalize', () => {
  it('cleans text to NFC without controls and with folded blanks', () => {
    expect(cleanText('  e\u0301te\u0301\u200b \t  ok\r\n\r\n\r\n\r\nend\u0007 ')).to.equal('été ok\n\nend');
    expect(cleanText('全角\u3000空格')).to.equal('全角 空格');
  });

  it('drops bidi overrides and isolates and C1 controls; subjects and names become one line; ids keep their length', () => {
    expect(cleanText('a\u202eb\u2066c\u2069d\u0085e\u009bf')).to.equal('abcd\nef');
    expect(cleanLine('Hello\nBcc: x@evil.example\r\n\tsecond\u2028line')).to.equal('Hello Bcc: x@evil.example second line');
    expect(cleanId('u\u202e1\ud800\n')).to.equal('u\ufffd1\ufffd\ufffd');
    expect(cleanId('o6_bmjrPTlm6_2sgVt7hMZOPfL2M')).to.equal('o6_bmjrPTlm6_2sgVt7hMZOPfL2M');
  });

  it('turns HTML into text without scripts or images', () => {
    const t = htmlToText('<html><style>p{}</style><body><p>您好，</p><p>路灯<b>坏了</b></p><img src="x.png"><script>alert(1)</script></body></html>');
    expect(t).to.contain('您好');
    expect(t).to.contain('路灯坏了');
    expect(t).not.to.contain('alert');
    expect(t).not.to.contain('x.png');
  });

  it('truncates without splitting a surrogate pair', () => {
    expect(truncate('ab😀', 3)).to.equal('ab');
  });

  it('tags languages by script and by function words', () => {
    expect(detectLanguage('小区停电了')).to.equal('zh');
    expect(detectLanguage('The street light is broken')).to.equal('en');
    expect(detectLanguage('街灯が壊れています')).to.equal('ja');
    expect(detectLanguage('가로등이 고장났어요')).to.equal('ko');
    expect(detectLanguage('Уличный фонарь сломан')).to.equal('ru');
    expect(detectLanguage('La lampe de la rue est cassée et le trottoir aussi')).to.equal('fr');
    expect(detectLanguage('')).to.equal('und');
  });

  it('sees the same matter in reworded repeats, not in different matters', () => {
    expect(similarity('幸福小区3号楼电梯坏了三天了，请尽快维修', '幸福小区3号楼电梯坏了三天了，请尽快维修！！')).to.be.greaterThan(SAME_MATTER);
    expect(similarity('幸福小区3号楼电梯坏了', '建议在学校门口设置减速带')).to.be.lessThan(SAME_MATTER);
  });

  it('classifies the hotline examples (DOMAIN.md)', () => {
    const c = (t: string) => classify(rules, null, t);
    expect(c('小区停电了，已经两个小时，请尽快处理').category).to.equal('help');
    expect(c('楼下饭店油烟太大，晚上还很吵，我要投诉').category).to.equal('complaint');
    expect(c('请问办理居住证需要哪些材料？').category).to.equal('consultation');
    expect(c('举报某工地夜间违规施工').category).to.equal('report');
    expect(c('建议在路口增设红绿灯').category).to.equal('suggestion');
    expect(c('感谢环卫工人，街道很干净').category).to.equal('praise');
    expect(c('我家着火了').emergency).to.deep.equal({ service: '119', reason: 'fire' });
    expect(c('有人持刀抢劫').emergency?.service).to.equal('110');
    expect(c('老人晕倒了，呼吸困难').emergency?.service).to.equal('120');
    expect(c('路口发生车祸').emergency?.service).to.equal('122');
    expect(c('There is a car crash at the crossing').emergency?.service).to.equal('122');
    expect(c('The street light at No. 5 Jingshi Road is broken')).to.deep.equal({ category: 'help', emergency: null, outOfScope: null });
    expect(c('对部队训练噪音有意见').outOfScope).to.deep.equal({ reason: 'military' });
  });

  it('sends gas, smoke and fire to 119, and gas questions to the hotline', () => {
    const c = (t: string) => classify(rules, null, t);
    expect(c('有很重的煤气味')).to.deep.equal({ category: 'help', emergency: { service: '119', reason: 'gas leak' }, outOfScope: null });
    expect(c('there is a gas smell').emergency).to.deep.equal({ service: '119', reason: 'gas leak' });
    expect(c('燃气泄漏').emergency?.service).to.equal('119');
    expect(c('3单元501冒烟了').emergency).to.deep.equal({ service: '119', reason: 'smoke' });
    expect(c('carbon monoxide alarm going off').emergency?.service).to.equal('119');
    expect(c('我刚被抢了').emergency?.service).to.equal('110');
    expect(c('有人晕倒了').emergency?.service).to.equal('120');
    expect(c('上次燃气公司来检查过了，想咨询一下收费')).to.deep.equal({ category: 'consultation', emergency: null, outOfScope: null });
    expect(c('天然气灶打不着火，请派人维修')).to.include({ category: 'help', emergency: null });
    expect(c('楼下烧烤店油烟太大，冒烟熏得我家窗户都不敢开')).to.include({ category: 'complaint', emergency: null });
  });

  it('normalizes phone numbers to E.164', () => {
    expect(normalizePhone('13800138000')).to.equal('+8613800138000');
    expect(normalizePhone('+86 138-0013-8000')).to.equal('+8613800138000');
    expect(normalizePhone('008613800138000')).to.equal('+8613800138000');
    expect(normalizePhone('+44 20 7946 0958')).to.equal('+442079460958');
    expect(normalizePhone('12345')).to.equal(null);
  });

  it('masks phone numbers and e-mail addresses for logs', () => {
    expect(maskPII('call 13800138000 or +8613912345678')).to.equal('call 138****8000 or +86139****5678');
    expect(maskPII('from zhang.san@example.cn')).to.equal('from z***@example.cn');
  });
});
