import { describeFaultSuite } from './assertions.js';

/**
 * Bounded fault suite, part of `npm test`: about 30 s of mixed load over every
 * channel with each fault once (the gateway killed twice). The full-size run is
 * faults.heavy.spec.ts (`npm run test:faults`).
 */
describeFaultSuite(
  'fault suite (bounded): mixed load over every channel with broker, process, SMSC, IMAP and disk faults',
  {
    label: 'bounded',
    loadMs: 32_000,
    workers: { app: 3, sms: 2, wechat: 2, weibo: 1, telegram: 1 },
    pauseMs: 40,
    mailEveryMs: 400,
    longSmsEvery: 4,
    brokerDownMs: 3000,
    readOnlyMs: 3000,
    retryGraceMs: 20_000,
    settleMs: 60_000,
    plan: [
      { fault: 'broker', at: 0.05 },
      { fault: 'kill', at: 0.3 },
      { fault: 'smscDrop', at: 0.45 },
      { fault: 'imapDrop', at: 0.5 },
      { fault: 'readOnly', at: 0.6 },
      { fault: 'kill', at: 0.85 },
    ],
  },
  240_000,
);
