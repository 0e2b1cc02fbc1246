// A process's CPU so far, read from /proc: what a bench server spent per request, apart from the load generator.
import { readFile } from 'node:fs/promises';

/** The process's CPU so far (user + system, every thread), in µs, from /proc (Linux); undefined elsewhere. */
export async function processCpuUs(pid: number): Promise<number | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  const fields = stat?.slice(stat.lastIndexOf(')') + 2).split(' ');
  if (!fields) return undefined;
  // utime and stime, fields 14 and 15 of the whole line, in clock ticks (100 a second on Linux).
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}
