// A child of the guard's cost benchmark: builds one chain (with or without the guard) on memory stores and drives it when asked.
import { buildChain, driveCpu, type Chain } from './guard-cost-chain.js';
import { answerParent } from './lib/child-answers.js';

export type GuardCostMessage =
  { type: 'build'; withGuard: boolean } | { type: 'drive'; requests: number; offset: number };

let chain: Chain | undefined;

answerParent<GuardCostMessage>(async (message) => {
  if (message.type === 'drive') return driveCpu(chain!.app, message.requests, message.offset);
  const { createMemoryStores } = await import('@tollgate/core');
  chain = await buildChain(createMemoryStores(), message.withGuard ? 3 : 0);
  // The guard's maps hold something, as during an attack: lookups take their real path.
  if (chain.guard) {
    await chain.guard.suspend('key:someone-else', 'bench');
    await chain.guard.throttle('tenant:someone-else', { scale: 0.5, durationMs: 3_600_000 });
  }
  return true;
});
