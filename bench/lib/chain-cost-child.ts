// Child entry for benchmark 1b: every step of the chain built in this one process and driven in turn, block by block.
import type { RequestListener } from 'node:http';
import { authHeaders, benchKey, CHAT_PATH, chatBody } from './fixtures.js';
import { cpuPerRequest } from './inject.js';
import { buildTollgateChain } from './tollgate-apps.js';
import { answerParent } from './child-answers.js';

export interface ChainCostRequest {
  steps: number;
  rounds: number;
  requestsPerBlock: number;
  warmupRequests: number;
  concurrency: number;
}

/** Per step, per round: CPU of the process (user + system) over the step's block, µs per request. */
export interface ChainCostSamples {
  perRound: number[][];
  /** Per step: the statuses answered (all 200 or the figures are void). */
  statuses: Record<string, number>[];
}

/** Numbers every request's user message across all apps and blocks. */
let nextMessage = 1;

/** A block of requests through `app`, each a user message never sent before (the system prompt repeats, as in real traffic). */
async function block(app: RequestListener, requests: number, concurrency: number, statuses: Record<string, number>) {
  const headers = authHeaders(benchKey(0));
  const request = () => ({ method: 'POST', url: CHAT_PATH, headers, body: Buffer.from(chatBody(nextMessage++)) });
  return (await cpuPerRequest(app, requests, concurrency, request, statuses)).cpuUs;
}

async function measure(request: ChainCostRequest): Promise<ChainCostSamples> {
  const built = [];
  for (let upTo = 0; upTo < request.steps; upTo++)
    built.push(await buildTollgateChain({ store: 'memory', upTo, freshPrompts: true }));
  try {
    const apps = built.map((b) => b.app as unknown as RequestListener);
    const statuses = apps.map(() => ({}) as Record<string, number>);
    for (const app of apps) await block(app, request.warmupRequests, request.concurrency, {});
    const perRound = apps.map(() => [] as number[]);
    for (let round = 0; round < request.rounds; round++) {
      // Each round starts at another step, so none always runs right after the same one.
      for (let turn = 0; turn < apps.length; turn++) {
        const step = (turn + round) % apps.length;
        perRound[step]!.push(await block(apps[step]!, request.requestsPerBlock, request.concurrency, statuses[step]!));
      }
    }
    return { perRound, statuses };
  } finally {
    for (const b of built) await b.close();
  }
}

answerParent<ChainCostRequest>(measure);
