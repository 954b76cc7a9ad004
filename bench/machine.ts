import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { cpuMs } from './lib.js';

/**
 * CPU accounting beyond single processes: PostgreSQL's share for one database, and
 * how busy the whole machine was, so figures taken on a shared machine say how
 * much of it other work used meanwhile.
 */

/**
 * PostgreSQL processes whose CPU belongs to a bench database: its backends
 * (`postgres: user db …`) and the server-wide writers every commit goes through
 * (WAL writer, checkpointer, background writer). Other databases' backends (other
 * people's tests on the same server) are left out.
 */
export function postgresPids(dbName: string): number[] {
  const out = execFileSync('ps', ['-e', '-o', 'pid=,args=']).toString();
  const pids: number[] = [];
  for (const line of out.split('\n')) {
    const m = /^\s*(\d+)\s+postgres: (.*)$/.exec(line);
    if (!m) continue;
    const what = m[2]!;
    if (/^(walwriter|checkpointer|background writer)\b/.test(what) || what.split(/\s+/).includes(dbName)) pids.push(Number(m[1]));
  }
  return pids;
}

function cpuOr0(pid: number): number {
  try {
    return cpuMs(pid);
  } catch {
    return 0; // exited meanwhile: its CPU is lost to the meter, which undercounts slightly
  }
}

/** PostgreSQL CPU for one database between start and stop, ms; backends started meanwhile count from 0. */
export function postgresMeter(dbName: string): { stop(): number } {
  const at = new Map(postgresPids(dbName).map((p) => [p, cpuOr0(p)]));
  return {
    stop() {
      let ms = 0;
      for (const p of postgresPids(dbName)) ms += cpuOr0(p) - (at.get(p) ?? 0);
      return ms;
    },
  };
}

/** Busy (non-idle, non-iowait) CPU of the whole machine so far, ms summed over cores. */
function machineBusyMs(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal guest guest_nice; guest time is already in user.
  const busy = f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + f[7]!;
  return (busy * 1000) / 100;
}

export interface MachineLoad {
  seconds: number;
  /** Whole machine busy CPU, as cores in use on average. */
  busyCores: number;
  /** What the measured processes did not account for: other work on the machine, cores. */
  otherCores: number;
  loadavg1: number;
}

/** Machine busy time over a window; `measuredMs` (the processes under test) is subtracted to give the others' share. */
export function machineMeter(): { stop(measuredMs: number): MachineLoad } {
  const t0 = performance.now();
  const b0 = machineBusyMs();
  return {
    stop(measuredMs) {
      const seconds = (performance.now() - t0) / 1000;
      const busy = machineBusyMs() - b0;
      return { seconds, busyCores: busy / 1000 / seconds, otherCores: Math.max(0, busy - measuredMs) / 1000 / seconds, loadavg1: loadavg()[0]! };
    },
  };
}

/** CPU ms of a set of processes so far (those gone count 0). */
export function cpuOf(pids: number[]): number {
  return pids.reduce((s, p) => s + cpuOr0(p), 0);
}
