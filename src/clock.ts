/** Injected wherever time matters, so tests and benchmarks can reason about it without branches in product code. */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };
