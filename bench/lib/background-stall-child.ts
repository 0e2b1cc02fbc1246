// The child that runs one case of background-stall.ts, started with the Node flags the gateway is started with and
// setting V8 as its server does (guard-stall.ts): a young generation is sized at start only.
import { applyServerV8Flags } from '../../packages/gateway/src/v8-flags.js';
import { abuseBucketRead, budgetRebuild, driftFirstTick } from './background-stall.js';
import { answerParent } from './child-answers.js';

export interface BackgroundRequest {
  work: 'abuse-bucket-read' | 'budget-rebuild' | 'drift-first-tick';
  subjects: number;
  /** The Redis the abuse case reads from. */
  url: string;
  /** V8 as it comes (`BENCH_STALL_V8_DEFAULTS=1`): an app that embeds the packages without the server's settings. */
  v8Defaults: boolean;
}

answerParent<BackgroundRequest>(async ({ work, subjects, url, v8Defaults }) => {
  if (!v8Defaults) applyServerV8Flags();
  if (work === 'abuse-bucket-read') return abuseBucketRead(url, subjects);
  return work === 'budget-rebuild' ? budgetRebuild(subjects) : driftFirstTick(subjects);
});
