// The deployment sections' load and its measure: every request the next tenant's key over 32 connections, the server
// process's CPU read around it and, on Redis, what its redis-server spent.
import { setTimeout as sleep } from 'node:timers/promises';
import { rotatingLoad, type DeploymentMode } from './deployment-config.js';
import { CHAT_PATH } from './fixtures.js';
import { runLoad, type LoadResult } from './load.js';
import { costPerRequest, type CostPerRequest, type PrivateRedis } from './private-redis.js';
import { processCpuUs } from './process-cpu.js';

/** The two loads the deployment sections measure apart, and their names in the tables. */
export type LoadMode = Exclude<DeploymentMode, 'mixed'>;
export const MODES: readonly LoadMode[] = ['json', 'stream'];
export const MODE_LABEL: Record<LoadMode, string> = { json: 'JSON', stream: 'SSE stream' };

/** Connections every deployment load keeps open. */
export const CONNECTIONS = 32;

/** `durationS` of the deployment's load on `url` (rotatingLoad over CONNECTIONS connections), optionally at a steady rate. */
export function deploymentLoad(
  url: string,
  mode: DeploymentMode,
  durationS: number,
  overallRate?: number,
): Promise<LoadResult> {
  return runLoad({
    url,
    path: CHAT_PATH,
    ...rotatingLoad(mode),
    connections: CONNECTIONS,
    durationS,
    ...(overallRate ? { overallRate } : {}),
  });
}

/** A deployment load and what it cost, per request: the server process's CPU (/proc) and, on Redis, the scripts'. */
interface MeasuredLoad {
  result: LoadResult;
  cpuUs?: number;
  cost?: CostPerRequest;
}

/**
 * `durationS` of `mode` load on `server`, its process's CPU read around it and, given its redis-server, that server's
 * INFO read before and `settleMs` after (once the settles of its last requests landed).
 */
export async function measuredLoad(
  server: { url: string; pid: number },
  mode: LoadMode,
  durationS: number,
  redis?: PrivateRedis,
  settleMs = 0,
): Promise<MeasuredLoad> {
  const before = redis ? await redis.cost() : undefined;
  const cpuBefore = await processCpuUs(server.pid);
  const result = await deploymentLoad(server.url, mode, durationS);
  const cpuAfter = await processCpuUs(server.pid);
  if (before && settleMs > 0) await sleep(settleMs);
  const cost = before ? costPerRequest(before, await redis!.cost(), result.requests) : undefined;
  return {
    result,
    ...(cpuBefore !== undefined && cpuAfter !== undefined && result.requests > 0
      ? { cpuUs: (cpuAfter - cpuBefore) / result.requests }
      : {}),
    ...(cost ? { cost } : {}),
  };
}
