import type { Dovecot } from '../../support/dovecot.js';

/** Poll Dovecot until the message with this UID carries `flag`. */
export async function waitForFlag(dovecot: Dovecot, uid: number, flag: string, timeoutMs = 15_000): Promise<Set<string>> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const flags = (await dovecot.flags()).get(uid);
    if (flags?.has(flag)) return flags;
    if (Date.now() > until) throw new Error(`UID ${uid} not flagged ${flag} within ${timeoutMs} ms (flags: ${[...(flags ?? [])].join(' ')})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export const MAILBOX_ADDRESS = 'mayor@city.example.gov.cn';

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
