import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { z } from 'zod';
import { classify, loadRules, type Rules } from '../src/normalize/rules.js';
import { Category, EmergencyService } from '../src/ticket.js';
import { projectRoot } from '../src/config.js';

/**
 * `npm run eval:rules [-- --errors] [rules.json] [set.jsonl]`: precision and recall of
 * the classification rules on labelled citizen messages — emergency or not (and which
 * number), and each category. Two sets: labelled.jsonl, which the rules were written
 * against (test/unit/rules-eval.spec.ts holds them to floors on it, so a change that
 * loses recall or precision fails), and holdout.jsonl, written after the rules were
 * frozen and never tuned on: its figures are the honest estimate for new wording.
 * Keep it that way — when the rules change because of holdout messages, move those
 * into labelled.jsonl and write a fresh holdout.
 */

export const Labelled = z.object({ text: z.string().min(1), emergency: EmergencyService.nullable(), category: Category });
export type Labelled = z.infer<typeof Labelled>;

export interface Score {
  label: string;
  /** Messages labelled with it. */
  support: number;
  tp: number;
  fp: number;
  fn: number;
  /** null when nothing was predicted (or nothing labelled) with this label. */
  precision: number | null;
  recall: number | null;
}

export interface Miss {
  text: string;
  expected: { emergency: string | null; category: string };
  got: { emergency: string | null; category: string };
}

export interface Evaluation {
  size: number;
  /** Emergency or not, whichever number. */
  emergency: Score;
  /** Per number; a fire sent to 110 counts against both 110 (fp) and 119 (fn). */
  services: Score[];
  categories: Score[];
  categoryAccuracy: number;
  misses: Miss[];
}

export const DEFAULT_SET = join(projectRoot(), 'test', 'fixtures', 'classify', 'labelled.jsonl');
export const HOLDOUT_SET = join(projectRoot(), 'test', 'fixtures', 'classify', 'holdout.jsonl');
export const DEFAULT_RULES = join(projectRoot(), 'config', 'rules.json');

export function loadLabelled(path = DEFAULT_SET): Labelled[] {
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l, i) => {
      const r = Labelled.safeParse(JSON.parse(l));
      if (!r.success) throw new Error(`${path}:${i + 1}: ${r.error.issues.map((x) => `${x.path.join('.')}: ${x.message}`).join('; ')}`);
      return r.data;
    });
}

function score(label: string, pairs: [boolean, boolean][]): Score {
  let tp = 0;
  let fp = 0;
  let fn = 0;
  for (const [expected, got] of pairs) {
    if (expected && got) tp++;
    else if (got) fp++;
    else if (expected) fn++;
  }
  return { label, support: tp + fn, tp, fp, fn, precision: tp + fp ? tp / (tp + fp) : null, recall: tp + fn ? tp / (tp + fn) : null };
}

export function evaluateRules(rules: Rules, set: Labelled[]): Evaluation {
  const results = set.map((s) => {
    const c = classify(rules, null, s.text);
    return { s, emergency: c.emergency?.service ?? null, category: c.category };
  });
  const misses = results
    .filter((r) => r.emergency !== r.s.emergency || r.category !== r.s.category)
    .map((r) => ({ text: r.s.text, expected: { emergency: r.s.emergency, category: r.s.category }, got: { emergency: r.emergency, category: r.category } }));
  return {
    size: set.length,
    emergency: score('emergency (any)', results.map((r) => [r.s.emergency !== null, r.emergency !== null])),
    services: EmergencyService.options.map((svc) => score(svc, results.map((r) => [r.s.emergency === svc, r.emergency === svc]))),
    categories: Category.options.map((cat) => score(cat, results.map((r) => [r.s.category === cat, r.category === cat]))),
    categoryAccuracy: results.filter((r) => r.category === r.s.category).length / set.length,
    misses,
  };
}

const pct = (v: number | null) => (v === null ? '—' : v.toFixed(2));

/** A Markdown table, as pasted into the README. */
export function table(e: Evaluation): string {
  const row = (s: Score) => `| ${s.label} | ${s.support} | ${pct(s.precision)} | ${pct(s.recall)} | ${s.fp} | ${s.fn} |`;
  return [
    '| label | messages | precision | recall | false pos. | missed |',
    '|---|---:|---:|---:|---:|---:|',
    row(e.emergency),
    ...e.services.map((s) => row({ ...s, label: `emergency ${s.label}` })),
    ...e.categories.map(row),
  ].join('\n');
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const showErrors = args.includes('--errors');
  const files = args.filter((a) => !a.startsWith('--'));
  const rulesPath = files.find((f) => f.endsWith('.json')) ?? DEFAULT_RULES;
  const sets = files.filter((f) => f.endsWith('.jsonl'));
  const rules = loadRules(rulesPath);
  const rel = (p: string) => p.replace(`${projectRoot()}/`, '');
  for (const setPath of sets.length ? sets : [DEFAULT_SET, HOLDOUT_SET]) {
    const e = evaluateRules(rules, loadLabelled(setPath));
    console.log(`## ${rel(setPath)}: ${e.size} labelled messages, rules ${rel(rulesPath)}\n`);
    console.log(table(e));
    console.log(`\ncategory accuracy ${pct(e.categoryAccuracy)}; ${e.misses.length} messages with a wrong emergency or category`);
    if (showErrors) {
      for (const m of e.misses) {
        console.log(`  ${m.text}\n    expected ${m.expected.emergency ?? '-'} / ${m.expected.category}, got ${m.got.emergency ?? '-'} / ${m.got.category}`);
      }
    } else if (e.misses.length) {
      console.log('(add --errors to list them)');
    }
    console.log('');
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
