// The memory book of Batch files and jobs: kept per owner, claimed once, swept in turn, forgotten after 8 days.
import { describe, expect, it } from '@jest/globals';
import { memoryBatchBook } from '../src/batch/batch-book.js';
import type { BatchJob } from '../src/batch/batch-book.js';

const job = (batchId: string, owner = 'tenant:acme'): BatchJob => ({
  ...{ owner, batchId, fileId: 'file-1', models: ['gpt-4o-mini'], worstCaseNanoUsd: 10, scopes: [] },
  ...{ tenantId: 'acme', keyId: 'k', userId: null, feature: null },
});

describe('memoryBatchBook', () => {
  it("keeps each owner's files and jobs apart", async () => {
    const book = memoryBatchBook();
    await book.putFile({ owner: 'tenant:acme', fileId: 'file-1', models: ['gpt-4o-mini'], worstCaseNanoUsd: 5 });
    await book.putJob(job('batch_1'));
    expect((await book.file('tenant:acme', 'file-1'))?.worstCaseNanoUsd).toBe(5);
    expect(await book.file('tenant:globex', 'file-1')).toBeUndefined();
    expect(await book.job('tenant:globex', 'batch_1')).toBeUndefined();
  });

  it('lets one caller claim a job, which is then open no more', async () => {
    const book = memoryBatchBook();
    await book.putJob(job('batch_1'));
    await book.putJob(job('batch_2'));
    const claims = await Promise.all([
      book.claimSettle('tenant:acme', 'batch_1'),
      book.claimSettle('tenant:acme', 'batch_1'),
    ]);
    expect(claims.sort()).toEqual([false, true]);
    expect((await book.openJobs(10)).map((open) => open.batchId)).toEqual(['batch_2']);
  });

  it('hands each sweep the jobs the last one did not ask about first', async () => {
    const book = memoryBatchBook();
    for (const id of ['a', 'b', 'c']) await book.putJob(job(id));
    expect((await book.openJobs(2)).map((open) => open.batchId)).toEqual(['a', 'b']);
    expect((await book.openJobs(2)).map((open) => open.batchId)).toEqual(['c', 'a']);
  });

  it('forgets files and jobs 8 days on', async () => {
    let now = 1_000_000;
    const book = memoryBatchBook(() => now);
    await book.putJob(job('batch_1'));
    now += 8 * 24 * 3600_000 - 1;
    expect(await book.job('tenant:acme', 'batch_1')).toBeDefined();
    now += 1;
    expect(await book.job('tenant:acme', 'batch_1')).toBeUndefined();
    expect(await book.openJobs(10)).toEqual([]);
  });
});
