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
  /** True for the one caller, of every process, that settles the job; the job is open no more. */
  claimSettle(owner: string, batchId: string): Promise<boolean>;
  /** The jobs not settled yet (at most `limit`), for the sweep that settles those nobody polls. */
  openJobs(limit: number): Promise<BatchJob[]>;
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
    async openJobs(limit) {
      const open: [string, { value: BatchJob; until: number }][] = [];
      for (const [key, entry] of jobs) {
        if (open.length >= limit) break;
        if (!claims.has(key) && entry.until > now()) open.push([key, entry]);
      }
      // Moved to the end: the next sweep asks about the jobs after them first.
      for (const [key, entry] of open) {
        jobs.delete(key);
        jobs.set(key, entry);
      }
      return open.map(([, entry]) => entry.value);
    },
  };
}

/** The Redis calls a shared book makes: the stores' own connection and key prefix. */
interface RedisBookConnection {
  sendCommand(args: string[]): Promise<unknown>;
  prefix: string;
}

/**
 * The book of every process sharing one Redis: each file, job and claim one key (under one hash tag, so a cluster
 * keeps them on one slot), kept KEPT_MS. The claim is `SET NX`: one process of all settles a job.
 */
function redisBatchBook({ sendCommand, prefix }: RedisBookConnection): BatchBook {
  const keyOf = (kind: string, owner: string, id: string) => `${prefix}{batch}:${kind}:${JSON.stringify([owner, id])}`;
  /** The jobs not settled yet: a set of their job keys. */
  const openKey = `${prefix}{batch}:open`;
  const put = async (key: string, value: unknown) => {
    await sendCommand(['SET', key, JSON.stringify(value), 'PX', String(KEPT_MS)]);
  };
  const read = async <T>(key: string): Promise<T | undefined> => {
    const text = await sendCommand(['GET', key]);
    return typeof text === 'string' ? (JSON.parse(text) as T) : undefined;
  };
  return {
    putFile: (file) => put(keyOf('file', file.owner, file.fileId), file),
    file: (owner, fileId) => read<BatchFile>(keyOf('file', owner, fileId)),
    async putJob(job) {
      const key = keyOf('job', job.owner, job.batchId);
      await put(key, job);
      await sendCommand(['SADD', openKey, key]);
    },
    job: (owner, batchId) => read<BatchJob>(keyOf('job', owner, batchId)),
    async claimSettle(owner, batchId) {
      const claimed = await sendCommand(['SET', keyOf('claim', owner, batchId), '1', 'NX', 'PX', String(KEPT_MS)]);
      await sendCommand(['SREM', openKey, keyOf('job', owner, batchId)]);
      return claimed === 'OK';
    },
    async openJobs(limit) {
      const keys = await sendCommand(['SRANDMEMBER', openKey, String(limit)]);
      const open: BatchJob[] = [];
      for (const key of Array.isArray(keys) ? (keys as string[]) : []) {
        const job = await read<BatchJob>(key);
        // Its key expired: it will never be settled here, so it is open no more.
        if (job) open.push(job);
        else await sendCommand(['SREM', openKey, key]);
      }
      return open;
    },
  };
}

/** The book the gateway's stores can share: Redis's where the stores are on Redis, else this process's memory. */
export function batchBookFor(stores: { kind: string }): BatchBook {
  const redis = stores as { kind: string; sendCommand?: unknown; prefix?: unknown };
  if (redis.kind === 'redis' && typeof redis.sendCommand === 'function' && typeof redis.prefix === 'string')
    return redisBatchBook({
      sendCommand: (args) => (redis.sendCommand as RedisBookConnection['sendCommand']).call(stores, args),
      prefix: redis.prefix,
    });
  return memoryBatchBook();
}
