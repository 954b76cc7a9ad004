import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../../src/config.js';
import { createMetrics } from '../../src/metrics.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';

type Json = any;

const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'offset', 'and', 'or', 'unless', 'inf', 'nan']);

/**
 * Metric names in a PromQL expression: identifiers left once Grafana variables,
 * strings, label matchers, ranges and grouping clauses are gone, that are not
 * function calls or keywords. `label_values(metric, label)` (a Grafana query,
 * not PromQL) names its metric first.
 */
function metricNames(expr: string): string[] {
  const lv = /^\s*label_values\(\s*(?:([a-zA-Z_:][\w:]*)\s*(?:\{[^}]*\})?\s*,)?\s*\w+\s*\)\s*$/.exec(expr);
  if (lv) return lv[1] ? [lv[1]] : [];
  const bare = expr
    .replace(/\$\{[^}]*\}|\$\w+/g, '')
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '');
  const names: string[] = [];
  for (const m of bare.matchAll(/[a-zA-Z_:][\w:]*/g)) {
    const after = bare.slice(m.index! + m[0].length);
    if (/^\s*\(/.test(after) || KEYWORDS.has(m[0].toLowerCase())) continue;
    // Exponents and durations are numbers, not names (1e3, 5m after a digit).
    if (m.index! > 0 && /[\d.]/.test(bare[m.index! - 1]!)) continue;
    names.push(m[0]);
  }
  return names;
}

/** Every series name a scrape of this exposition can match, including histogram and counter suffixes. */
function exportedNames(exposition: string): Set<string> {
  const names = new Set<string>();
  for (const line of exposition.split('\n')) {
    const type = /^# TYPE (\S+) (\w+)/.exec(line);
    if (type) {
      const [, name, kind] = type as unknown as [string, string, string];
      names.add(name);
      if (kind === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(name + s);
      if (kind === 'summary') for (const s of ['_sum', '_count']) names.add(name + s);
      // OpenMetrics names a counter without _total in TYPE; its samples carry it.
      if (kind === 'counter' && !name.endsWith('_total')) names.add(`${name}_total`);
      continue;
    }
    const sample = /^([a-zA-Z_:][\w:]*)[{ ]/.exec(line);
    if (sample) names.add(sample[1]!);
  }
  return names;
}

function expressions(dashboard: Json): string[] {
  const out: string[] = [];
  const walk = (panels: Json[]) => {
    for (const p of panels ?? []) {
      for (const t of p.targets ?? []) if (typeof t.expr === 'string') out.push(t.expr);
      walk(p.panels);
    }
  };
  walk(dashboard.panels);
  for (const v of dashboard.templating?.list ?? []) {
    if (v.type !== 'query') continue;
    out.push(typeof v.query === 'string' ? v.query : v.query.query);
  }
  return out;
}

describe('Grafana dashboard (ops/grafana/intake-gateway.json)', function () {
  this.timeout(60_000);
  let tg: TestGateway;
  const dashboard: Json = JSON.parse(readFileSync(join(projectRoot(), 'ops', 'grafana', 'intake-gateway.json'), 'utf8'));
  const referenced = new Map<string, string>();
  for (const e of expressions(dashboard)) for (const n of metricNames(e)) referenced.set(n, e);

  before(async () => {
    tg = await startTestGateway({}, { noCollectors: true });
  });
  after(async () => {
    await tg?.stop();
  });

  it('finds metric names in PromQL the way Prometheus reads it', () => {
    expect(metricNames('histogram_quantile(0.99, sum by (le) (rate(a_bucket{instance=~"$instance", x="y{z}"}[$__rate_interval])))')).to.deep.equal(['a_bucket']);
    expect(metricNames('sum(rate(a_sum[5m])) / sum(rate(a_count[5m])) > 1e3 and on (job) b_total offset 5m')).to.deep.equal(['a_sum', 'a_count', 'b_total']);
    expect(metricNames('label_values(up, instance)')).to.deep.equal(['up']);
  });

  it('every metric its expressions use is exported by a running gateway’s /metrics', async () => {
    const res = await fetch(`${tg.baseUrl}/metrics`);
    expect(res.status).to.equal(200);
    const exported = exportedNames(await res.text());
    expect(referenced.size).to.be.greaterThan(10);
    const missing = [...referenced].filter(([n]) => !exported.has(n)).map(([n, e]) => `${n} (in ${e})`);
    expect(missing).to.deep.equal([]);
  });

  it('shows every gateway metric src/metrics.ts defines', () => {
    const defined = Object.values(createMetrics())
      .map((m) => (m as { name?: unknown }).name)
      .filter((n): n is string => typeof n === 'string');
    expect(defined.length).to.be.greaterThan(5);
    const used = [...referenced.keys()];
    const unshown = defined.filter((n) => !used.some((u) => u === n || u.startsWith(`${n}_`)));
    expect(unshown).to.deep.equal([]);
  });

  it('takes its data source from a Prometheus datasource variable', () => {
    const ds = (dashboard.templating.list as Json[]).find((v) => v.type === 'datasource');
    expect(ds).to.include({ name: 'datasource', query: 'prometheus' });
    const refs: Json[] = [];
    const walk = (panels: Json[]) => {
      for (const p of panels ?? []) {
        if (p.type !== 'row') refs.push(p.datasource, ...(p.targets ?? []).map((t: Json) => t.datasource));
        walk(p.panels);
      }
    };
    walk(dashboard.panels);
    expect(refs.length).to.be.greaterThan(0);
    for (const r of refs) expect(r).to.deep.equal({ type: 'prometheus', uid: '${datasource}' });
  });
});
