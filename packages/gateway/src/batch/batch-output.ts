// A finished Batch job's output file read into usage records, each line at batch prices (docs/batch.md).
import { costNanoUsd } from '@tollgate/core/costs';
import type { Pricing, UsageRecord } from '@tollgate/core';
import { adapterFor } from '@tollgate/providers';
import type { BatchJob } from './batch-book.js';
import { BATCH_ENDPOINTS, BATCH_TIER } from './batch-input.js';

/** The endpoint whose answer an output line holds, by the answer's `object`; its API is the endpoint's. */
const ENDPOINT_OF_OBJECT: Readonly<Record<string, string>> = {
  'chat.completion': '/v1/chat/completions',
  response: '/v1/responses',
  list: '/v1/embeddings',
};

/** Output counted at its bytes where an answer reports no usage: never under the tokens it holds. */
const byteCount = (text: string) => Buffer.byteLength(text, 'utf8');

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** One record of a line that has an answer with usage; undefined for a line that failed (nothing billed). */
function lineRecord(
  job: BatchJob,
  line: Record<string, unknown>,
  pricing: Pricing,
  at: string,
): UsageRecord | undefined {
  const response = line.response;
  if (!isObject(response) || !isObject(response.body)) return undefined;
  const body = response.body;
  const endpoint = typeof body.object === 'string' ? ENDPOINT_OF_OBJECT[body.object] : undefined;
  const api = endpoint === undefined ? undefined : BATCH_ENDPOINTS[endpoint];
  if (api === undefined || typeof body.model !== 'string') return undefined;
  const reader = adapterFor(api).createReader();
  reader.onJson(body);
  const read = reader.result(byteCount);
  if (!read) return undefined;
  const price = pricing.get(body.model, BATCH_TIER);
  const customId = typeof line.custom_id === 'string' ? line.custom_id : String(line.id ?? '');
  return {
    ...read.usage,
    id: `${job.batchId}:${customId}`.slice(0, 200),
    requestId: job.batchId,
    timestamp: at,
    keyId: job.keyId,
    tenantId: job.tenantId,
    userId: job.userId,
    feature: job.feature,
    route: '/v1/batches',
    provider: price.provider,
    model: body.model,
    requestedModel: body.model,
    serviceTier: BATCH_TIER,
    costNanoUsd: costNanoUsd(read.usage, price),
    estimatedCostNanoUsd: 0,
    priceVersion: pricing.version,
    status: typeof response.status_code === 'number' ? response.status_code : 200,
    stream: false,
    aborted: false,
    latencyMs: 0,
    usageSource: read.source,
  };
}

/** An output file read: a record per line answered with usage, and how many lines could not be read at all. */
interface BatchOutput {
  records: UsageRecord[];
  unreadable: number;
}

/** The records of an output file (JSONL), one per line answered; a line that is not JSON is counted unreadable. */
export function outputRecords(job: BatchJob, text: string, pricing: Pricing, now: number): BatchOutput {
  const at = new Date(now).toISOString();
  const records: UsageRecord[] = [];
  let unreadable = 0;
  for (const row of text.split('\n')) {
    if (row.trim().length === 0) continue;
    let line: unknown;
    try {
      line = JSON.parse(row);
    } catch {
      unreadable++;
      continue;
    }
    const record = isObject(line) ? lineRecord(job, line, pricing, at) : undefined;
    if (record) records.push(record);
  }
  return { records, unreadable };
}
