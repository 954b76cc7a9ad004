import { describeFaultSuite } from './assertions.js';

/**
 * Full-size fault suite (`npm run test:faults`; excluded from `npm test` by
 * .mocharc.json): three minutes of heavier mixed load, every fault, the broker
 * and the disk down for longer, the gateway killed twice.
 */
describeFaultSuite(
  'fault suite (full size): mixed load over every channel with broker, process, SMSC, IMAP and disk faults',
  {
    label: 'full size',
    loadMs: 180_000,
    workers: { app: 8, sms: 4, wechat: 4, weibo: 2, telegram: 2 },
    pauseMs: 10,
    mailEveryMs: 150,
    longSmsEvery: 3,
    brokerDownMs: 15_000,
    readOnlyMs: 10_000,
    retryGraceMs: 45_000,
    settleMs: 180_000,
    plan: [
      { fault: 'broker', at: 0.05 },
      { fault: 'kill', at: 0.25 },
      { fault: 'smscDrop', at: 0.35 },
      { fault: 'imapDrop', at: 0.42 },
      { fault: 'readOnly', at: 0.5 },
      { fault: 'smscDrop', at: 0.65 },
      { fault: 'imapDrop', at: 0.7 },
      { fault: 'kill', at: 0.8 },
    ],
  },
  900_000,
);
