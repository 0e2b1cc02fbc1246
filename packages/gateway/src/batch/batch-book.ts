// What the gateway remembers of Batch files and jobs, per owner: the worst case of each file, the spend of each job,
// and the claim that settles a job once (docs/batch.md).
import type { LedgerScope } from '@tollgate/core/store-contracts';

/** An input file the gateway read on its way upstream. */
export interface BatchFile {
  owner: string;
  fileId: string;
  models: string[];
  worstCaseNanoUsd: number;
}

/** A job admitted against the budgets: what it was charged, and where. */
export interface BatchJob {
  owner: string;
  batchId: string;
  fileId: string;
  models: string[];
  worstCaseNanoUsd: number;
  /** The ledger scopes charged its worst case (budgetGuard's `spendWhole`). */
  scopes: LedgerScope[];
  /** Who created it: its records are theirs. */
  tenantId: string | null;
  keyId: string | null;
  userId: string | null;
  feature: string | null;
}

/** Where files and jobs are kept: memory for one process; a shared store for several. */
export interface BatchBook {
  putFile(file: BatchFile): Promise<void>;
  file(owner: string, fileId: string): Promise<BatchFile | undefined>;
  putJob(job: BatchJob): Promise<void>;
  job(owner: string, batchId: string): Promise<BatchJob | undefined>;
  /** True for the one caller, of every process, that settles the job. */
  claimSettle(owner: string, batchId: string): Promise<boolean>;
}

/** How long files and jobs are kept: past the Batch API's 24 h window and a week of polling after it. */
const KEPT_MS = 8 * 24 * 3600_000;

/** The book of one process. Entries are dropped once past KEPT_MS (looked at as entries are added). */
export function memoryBatchBook(now: () => number = Date.now): BatchBook {
  const files = new Map<string, { value: BatchFile; until: number }>();
  const jobs = new Map<string, { value: BatchJob; until: number }>();
  const claims = new Map<string, number>();
  const keyOf = (owner: string, id: string) => JSON.stringify([owner, id]);
  const sweep = () => {
    const at = now();
    for (const map of [files, jobs]) for (const [key, entry] of map) if (entry.until <= at) map.delete(key);
    for (const [key, until] of claims) if (until <= at) claims.delete(key);
  };
  const live = <T>(entry: { value: T; until: number } | undefined) =>
    entry && entry.until > now() ? entry.value : undefined;
  return {
    async putFile(file) {
      sweep();
      files.set(keyOf(file.owner, file.fileId), { value: file, until: now() + KEPT_MS });
    },
    async file(owner, fileId) {
      return live(files.get(keyOf(owner, fileId)));
    },
    async putJob(job) {
      sweep();
      jobs.set(keyOf(job.owner, job.batchId), { value: job, until: now() + KEPT_MS });
    },
    async job(owner, batchId) {
      return live(jobs.get(keyOf(owner, batchId)));
    },
    async claimSettle(owner, batchId) {
      const key = keyOf(owner, batchId);
      if (claims.has(key)) return false;
      claims.set(key, now() + KEPT_MS);
      return true;
    },
  };
}
