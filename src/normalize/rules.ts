import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { Category, EmergencyService, type Ticket } from '../ticket.js';
import { GatewayError } from '../errors.js';

/** Classification rules live in a JSON file (config/rules.json) so operators can tune them without a release. */
const RulesFile = z.object({
  /**
   * Wording that makes a message no emergency whichever rule matched: habits (每天, 经常),
   * past events (上周, 昨天), hazards (隐患), claims and thanks. A report that a pipe
   * smelled of gas last week, or thanks to the firemen, needs 12345, not 119.
   */
  notEmergency: z.array(z.string()).default([]),
  emergency: z.array(
    z.object({
      service: EmergencyService,
      reason: z.string(),
      patterns: z.array(z.string()).min(1),
      /** Like notEmergency, for this rule only (油烟 vetoes smoke, not a range-hood fire). */
      unless: z.array(z.string()).default([]),
      /** The category when no category rule matches: a citizen in danger is asking for help (求助). */
      category: Category.optional(),
    }),
  ),
  outOfScope: z.array(z.object({ reason: z.string(), patterns: z.array(z.string()).min(1) })),
  category: z.array(z.object({ category: Category, patterns: z.array(z.string()).min(1) })),
});

interface Compiled<T> {
  value: T;
  re: RegExp;
}

export interface Rules {
  notEmergency: RegExp | null;
  emergency: (Compiled<{ service: z.infer<typeof EmergencyService>; reason: string; category: z.infer<typeof Category> | null }> & { unless: RegExp | null })[];
  outOfScope: Compiled<{ reason: string }>[];
  category: Compiled<z.infer<typeof Category>>[];
}

function compile(patterns: string[], where: string): RegExp {
  try {
    // No `u` flag: patterns are literal CJK (BMP) text and ASCII words with \b, which match the
    // same without it, and V8 runs these alternations about 15× faster in non-unicode mode.
    return new RegExp(patterns.map((p) => `(?:${p})`).join('|'), 'i');
  } catch (err) {
    throw new GatewayError('CONFIG_INVALID', `rules: bad pattern in ${where}: ${(err as Error).message}`);
  }
}

export function loadRules(path: string): Rules {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new GatewayError('CONFIG_INVALID', `rules file ${path}: ${(err as Error).message}`);
  }
  const r = RulesFile.safeParse(parsed);
  if (!r.success) throw new GatewayError('CONFIG_INVALID', `rules file ${path}: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return {
    notEmergency: r.data.notEmergency.length ? compile(r.data.notEmergency, 'notEmergency') : null,
    emergency: r.data.emergency.map((e, i) => ({
      value: { service: e.service, reason: e.reason, category: e.category ?? null },
      re: compile(e.patterns, `emergency[${i}]`),
      unless: e.unless.length ? compile(e.unless, `emergency[${i}].unless`) : null,
    })),
    outOfScope: r.data.outOfScope.map((e, i) => ({ value: { reason: e.reason }, re: compile(e.patterns, `outOfScope[${i}]`) })),
    category: r.data.category.map((e, i) => ({ value: e.category, re: compile(e.patterns, `category[${i}]`) })),
  };
}

export interface Classification {
  category: Ticket['category'];
  emergency: Ticket['emergency'];
  outOfScope: Ticket['outOfScope'];
}

export function classify(rules: Rules, subject: string | null, content: string): Classification {
  const text = subject ? `${subject}\n${content}` : content;
  const emergencyRule = rules.notEmergency?.test(text) ? undefined : rules.emergency.find((r) => r.re.test(text) && !r.unless?.test(text));
  const oos = rules.outOfScope.find((r) => r.re.test(text));
  const cat = rules.category.find((r) => r.re.test(text));
  return {
    category: cat?.value ?? emergencyRule?.value.category ?? 'unknown',
    emergency: emergencyRule ? { service: emergencyRule.value.service, reason: emergencyRule.value.reason } : null,
    outOfScope: oos ? { reason: oos.value.reason } : null,
  };
}
