import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/**
 * WAL checkpoints on a thread of their own. SQLite's automatic checkpoint runs in
 * the connection that commits, right after the commit that takes the WAL past its
 * limit: on the event loop, where copying 40 MB of WAL back into the database and
 * syncing it stalled every request for ≈50 ms on the project's machine, once every
 * 15–20 s at 1,000 tickets/s. Here a worker thread with its own connection runs a
 * PASSIVE checkpoint (it never waits for, nor blocks, the writer) every `everyMs`;
 * when it has copied every frame, the writer's next transaction starts the WAL over
 * from its beginning, so the WAL stays at about one interval of writes.
 *
 * The writer keeps a high automatic-checkpoint limit as a backstop in case this
 * thread stops; in normal operation the WAL never reaches it.
 */

// The worker is plain CommonJS handed over as source: no second build output or
// loader to find at run time, the same under tsx and in the compiled dist/.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.file, { fileMustExist: true });
db.pragma('busy_timeout = 1000');
db.pragma('synchronous = NORMAL');
// A PASSIVE checkpoint copies the frames that were there when it began; the writer's
// commits meanwhile stay behind it, and the WAL starts over only when a writer begins
// with every frame copied. So it goes again at once while frames remain: each pass has
// fewer to copy, and the last, a millisecond or so, usually falls between two commits.
let timer = setInterval(() => {
  const t = performance.now();
  try {
    let frames = 0, r;
    for (let pass = 0; pass < 20; pass++) {
      [r] = db.pragma('wal_checkpoint(PASSIVE)');
      frames += Math.max(0, r.checkpointed);
      if (r.busy === 1 || r.checkpointed >= r.log) break;
    }
    parentPort.postMessage({ ms: performance.now() - t, frames, busy: r.busy === 1 || r.checkpointed < r.log });
  } catch (err) {
    parentPort.postMessage({ error: String(err && err.message || err) });
  }
}, workerData.everyMs);
parentPort.on('message', (m) => {
  if (m !== 'stop') return;
  clearInterval(timer);
  db.close();
  parentPort.close();
});
`;

export interface CheckpointReport {
  /** Time the checkpoint took on its thread, ms. */
  ms: number;
  /** WAL frames (pages) copied into the database. */
  frames: number;
  /** Whether a reader or the writer kept it from copying everything (it goes on next time). */
  busy: boolean;
  /** Run by the writer's own connection, on the event loop (the journal's catch-up). */
  onLoop?: boolean;
}

export class Checkpointer {
  private readonly worker: Worker;
  private stopped = false;

  constructor(
    file: string,
    everyMs: number,
    onReport: (r: CheckpointReport) => void,
    onError: (message: string) => void,
  ) {
    const driver = createRequire(import.meta.url).resolve('better-sqlite3');
    // The thread runs one pragma a second: a small heap keeps its cost in RSS to a few MB.
    this.worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { file, everyMs, driver },
      resourceLimits: { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 16, codeRangeSizeMb: 2, stackSizeMb: 1 },
    });
    // The thread must not keep a stopping process alive; stop() ends it properly.
    this.worker.unref();
    this.worker.on('message', (m: CheckpointReport | { error: string }) => ('error' in m ? onError(m.error) : onReport(m)));
    this.worker.on('error', (err) => onError(err.message));
  }

  /** Ends the thread after any checkpoint in progress; resolves when its connection is closed. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const exited = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
    // Referenced while waiting: with nothing else left, an unreferenced thread would let the
    // process end here, before whoever awaits this (a shutdown about to exit 78) goes on.
    this.worker.ref();
    this.worker.postMessage('stop');
    // A thread stuck in a checkpoint on a dead disk is not waited for forever.
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, 5000)));
    await Promise.race([exited, timeout]);
    clearTimeout(timer);
    await this.worker.terminate();
  }
}
