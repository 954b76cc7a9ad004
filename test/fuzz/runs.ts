/**
 * How many cases each fuzz property runs. `npm test` uses the small default;
 * `FUZZ_RUNS=10000 npm run fuzz` is the full run (at least 10,000 cases per parser).
 */
export const RUNS = Number(process.env.FUZZ_RUNS ?? 200);

/** Cases per property that go through the real gateway over HTTP: far fewer, they are slow. */
export const GATEWAY_RUNS = Math.max(40, Math.floor(RUNS / 20));

/** Fixed with FUZZ_SEED to replay a failing run; fast-check prints the seed and path on failure. */
export const SEED = process.env.FUZZ_SEED === undefined ? undefined : Number(process.env.FUZZ_SEED);

export function fcParams(numRuns = RUNS): { numRuns: number; seed?: number } {
  return SEED === undefined ? { numRuns } : { numRuns, seed: SEED };
}
