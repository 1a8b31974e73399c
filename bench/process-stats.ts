import { readdirSync, readFileSync } from 'node:fs';

/** Resident memory of a process now and its peak so far (VmHWM), MiB, from /proc (Linux). */
export function memoryOf(pid: number): { rssMiB: number; peakMiB: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0);
  return { rssMiB: kb('VmRSS') / 1024, peakMiB: kb('VmHWM') / 1024 };
}

/** CPU time (user + system) a process has used, ms, from /proc/<pid>/stat. */
export function cpuMsOf(pid: number): number {
  return ticksMs(readFileSync(`/proc/${pid}/stat`, 'utf8'));
}

/**
 * CPU time of a process's main thread (the JavaScript thread), ms: the rest of `cpuMsOf` is V8's
 * helper threads (garbage collection, compilation) and libuv's pool.
 */
export function mainThreadCpuMsOf(pid: number): number {
  return ticksMs(readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8'));
}

function ticksMs(stat: string): number {
  // Fields after the parenthesised command name; utime and stime are fields 14 and 15 (1-based).
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  // USER_HZ, the unit of those fields, is 100 on every Linux architecture Node runs on.
  return (ticks * 1000) / 100;
}

/** The pid of the redis-server listening on `port` (its process title is `redis-server 127.0.0.1:<port>`). */
export function redisPid(port: number): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmdline.startsWith('redis-server') && cmdline.includes(`:${port}`)) return Number(entry);
    } catch {
      // The process ended while the list was read.
    }
  }
  return undefined;
}

/** Pids of the processes whose command line contains `text` (e.g. a private server's config dir). */
export function pidsByCmdline(text: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(text)) pids.push(Number(entry));
    } catch {
      // The process ended while the list was read.
    }
  }
  return pids;
}
