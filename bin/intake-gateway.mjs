#!/usr/bin/env node
/**
 * `npx intake-gateway <command>`: the operators' command line (src/cli/main.ts).
 *
 * It runs the TypeScript source through tsx's loader, because that works in a fresh
 * clone right after `npm ci` (tsx is installed with the dev dependencies), while
 * dist/ exists only after `npm run build` and may be older than the source beside
 * it. An installation without dev dependencies (`npm ci --omit=dev`) has no tsx:
 * it runs the compiled dist/ instead, which such an installation builds to start.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const compiled = fileURLToPath(new URL('../dist/src/cli/main.js', import.meta.url));
let register = null;
try {
  ({ register } = await import('tsx/esm/api'));
} catch {
  register = null;
}
if (register) {
  register();
  await import('../src/cli/main.ts');
} else if (existsSync(compiled)) {
  await import(compiled);
} else {
  process.stderr.write('intake-gateway: neither tsx (npm ci) nor a build (npm run build) is installed\n');
  process.exit(70);
}
