// A process's CPU so far and its memory, read from /proc: what a bench server spent, apart from the load generator.
import { readFile } from 'node:fs/promises';

/** user + system CPU of a /proc `stat` file (a process's or one thread's), in µs; undefined when it cannot be read. */
async function statCpuUs(path: string): Promise<number | undefined> {
  const stat = await readFile(path, 'utf8').catch(() => undefined);
  const fields = stat?.slice(stat.lastIndexOf(')') + 2).split(' ');
  if (!fields) return undefined;
  // utime and stime, fields 14 and 15 of the whole line, in clock ticks (100 a second on Linux).
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

/** The process's CPU so far (user + system, every thread), in µs, from /proc (Linux); undefined elsewhere. */
export function processCpuUs(pid: number): Promise<number | undefined> {
  return statCpuUs(`/proc/${pid}/stat`);
}

/** The process's resident set now (VmRSS) and the most it was resident since it started (VmHWM), in bytes (Linux). */
export async function processMemory(pid: number): Promise<{ rss: number; peak: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string) => {
    const value = new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, 'm').exec(status)?.[1];
    if (value === undefined) throw new Error(`no ${field} in /proc/${pid}/status`);
    return Number(value) * 1024;
  };
  return { rss: kib('VmRSS'), peak: kib('VmHWM') };
}
