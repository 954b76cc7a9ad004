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
let timer = setInterval(() => {
  const t = performance.now();
  try {
    const [r] = db.pragma('wal_checkpoint(PASSIVE)');
    parentPort.postMessage({ ms: performance.now() - t, frames: r.checkpointed, busy: r.busy === 1 });
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
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { file, everyMs, driver } });
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
    this.worker.postMessage('stop');
    // A thread stuck in a checkpoint on a dead disk is not waited for forever.
    const timeout = new Promise<void>((resolve) => setTimeout(resolve, 5000).unref());
    await Promise.race([exited, timeout]);
    await this.worker.terminate();
  }
}
