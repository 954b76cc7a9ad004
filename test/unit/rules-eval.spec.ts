import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { classify, loadRules } from '../../src/normalize/rules.js';
import { DEFAULT_RULES, DEFAULT_SET, HOLDOUT_SET, evaluateRules, loadLabelled } from '../../bench/rules-eval.js';

/**
 * Floors for config/rules.json on test/fixtures/classify/labelled.jsonl (the set the
 * rules were written against), a little under what they measure today so that a rule
 * change which loses an emergency class or a category fails here. They guard against
 * regressions; they do not promise these figures on new wording (holdout.jsonl, README).
 */
describe('classification rules: measured on the labelled set', () => {
  const rules = loadRules(DEFAULT_RULES);
  const e = evaluateRules(rules, loadLabelled());

  it('has a set large enough to measure, with every label present', () => {
    expect(e.size).to.be.at.least(300);
    for (const s of [...e.services, ...e.categories]) expect(s.support, s.label).to.be.at.least(10);
  });

  it('emergencies: recall ≥ 0.97 (a miss is a citizen not told to call 119/110/120/122), precision ≥ 0.95', () => {
    expect(e.emergency.recall).to.be.at.least(0.97);
    expect(e.emergency.precision).to.be.at.least(0.95);
  });

  it('each emergency number: recall ≥ 0.95 and precision ≥ 0.9', () => {
    for (const s of e.services) {
      expect(s.recall, `${s.label} recall`).to.be.at.least(0.95);
      expect(s.precision, `${s.label} precision`).to.be.at.least(0.9);
    }
  });

  it('categories: accuracy ≥ 0.95; each category recall ≥ 0.9 and precision ≥ 0.9 (unknown, the fallback, ≥ 0.7)', () => {
    expect(e.categoryAccuracy).to.be.at.least(0.95);
    for (const s of e.categories) {
      expect(s.recall, `${s.label} recall`).to.be.at.least(0.9);
      expect(s.precision, `${s.label} precision`).to.be.at.least(s.label === 'unknown' ? 0.7 : 0.9);
    }
  });

  it('the held-out set loads and is separate from the labelled one', () => {
    const labelled = new Set(loadLabelled(DEFAULT_SET).map((x) => x.text));
    const holdout = loadLabelled(HOLDOUT_SET);
    expect(holdout.length).to.be.at.least(40);
    expect(holdout.filter((x) => labelled.has(x.text))).to.deep.equal([]);
  });

  it('a notEmergency or unless pattern stops an emergency rule; its category fills in when no category rule matches', () => {
    const dir = mkdtempSync(join(tmpdir(), 'rules-'));
    try {
      const path = join(dir, 'rules.json');
      writeFileSync(
        path,
        JSON.stringify({
          notEmergency: ['上周'],
          emergency: [{ service: '119', reason: 'smoke', category: 'help', patterns: ['冒烟'], unless: ['烧烤'] }],
          outOfScope: [],
          category: [{ category: 'complaint', patterns: ['太吵'] }],
        }),
      );
      const r = loadRules(path);
      expect(classify(r, null, '三楼冒烟了')).to.deep.equal({ category: 'help', emergency: { service: '119', reason: 'smoke' }, outOfScope: null });
      expect(classify(r, null, '烧烤摊冒烟')).to.include({ emergency: null, category: 'unknown' });
      expect(classify(r, null, '上周三楼冒烟了').emergency).to.equal(null);
      expect(classify(r, null, '冒烟了，还太吵').category).to.equal('complaint');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
