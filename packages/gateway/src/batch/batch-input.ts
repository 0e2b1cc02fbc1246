// A Batch input file read as it passes to the upstream: each line a request the Batch API takes, and the most the
// whole file may cost at batch prices (docs/batch.md).
import { ApiError } from '@tollgate/core';
import type { Pricing, ProviderApi } from '@tollgate/core';
import { maxCostNanoUsd } from '@tollgate/core/costs';
import { providerAdapters } from '@tollgate/providers/routes';

/** The endpoints the Batch API takes (a line's `url`). */
const BATCH_PATHS: readonly string[] = ['/v1/chat/completions', '/v1/responses', '/v1/embeddings'];

/** The endpoints a Batch line may name, and the API each speaks: the adapter that serves the path (the registry's). */
export const BATCH_ENDPOINTS: Readonly<Record<string, ProviderApi>> = Object.fromEntries(
  providerAdapters().flatMap((adapter) =>
    adapter.route && BATCH_PATHS.includes(adapter.route.path) ? [[adapter.route.path, adapter.api]] : [],
  ),
);

/** The service tier whose prices a batch is billed at (the catalogue's `batch` rows: half the standard prices). */
export const BATCH_TIER = 'batch';

/** What the gateway keeps of an input file: its models and the most it may cost. */
interface BatchInput {
  models: string[];
  lines: number;
  /** The sum over its lines of input at its bound and the whole output cap, at batch prices. */
  worstCaseNanoUsd: number;
}

/** Fields that cap a line's output, by API (the first present wins). */
const OUTPUT_CAPS = ['max_completion_tokens', 'max_tokens', 'max_output_tokens'] as const;

function refuse(line: number, message: string, param = 'file'): never {
  throw new ApiError('invalid_request', `Line ${line} of the batch file: ${message}`, { param });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A count the line sets (a non-negative integer), or undefined; anything else is refused. */
function countOf(body: Record<string, unknown>, field: string, line: number): number | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0)
    refuse(line, `body.${field} must be a non-negative integer.`);
  return value;
}

/** The most one line may cost: every byte of its body a token at the dearest input class, its whole cap output. */
function lineWorstCase(body: Record<string, unknown>, endpoint: string, pricing: Pricing, line: number): number {
  const model = body.model as string;
  const price = pricing.find(model, BATCH_TIER);
  if (!price) refuse(line, `the model "${model.slice(0, 100)}" has no price in this gateway's pricing table.`);
  // A token covers at least one byte: the body's bytes bound its input whatever the tokenizer.
  const inputBound = Buffer.byteLength(JSON.stringify(body), 'utf8');
  if (endpoint === '/v1/embeddings') return maxCostNanoUsd(inputBound, 0, price);
  let cap: number | undefined;
  for (const field of OUTPUT_CAPS) cap ??= countOf(body, field, line);
  cap ??= price.maxOutputTokens;
  if (cap === undefined) refuse(line, `it names no output cap and the model "${model}" has no known maximum output.`);
  const choices = countOf(body, 'n', line) ?? 1;
  return maxCostNanoUsd(inputBound, cap * Math.max(1, choices), price);
}

/**
 * Reads a Batch input file (JSONL): every line `{ custom_id, method: "POST", url, body: { model, ... } }` with `url`
 * one of BATCH_ENDPOINTS and a model the pricing knows. Throws a 400 `invalid_request` naming the first line that is
 * not one.
 */
export function readBatchInput(text: string, pricing: Pricing): BatchInput {
  const models = new Set<string>();
  const ids = new Set<string>();
  let worstCaseNanoUsd = 0;
  let lines = 0;
  const rows = text.split('\n');
  for (let index = 0; index < rows.length; index++) {
    const row = rows[index]!.trim();
    if (row.length === 0) continue;
    const line = index + 1;
    let request: unknown;
    try {
      request = JSON.parse(row);
    } catch {
      refuse(line, 'it is not JSON.');
    }
    if (!isObject(request)) refuse(line, 'it is not a JSON object.');
    const { custom_id: customId, method, url, body } = request;
    if (typeof customId !== 'string' || customId.length === 0) refuse(line, 'custom_id must be a non-empty string.');
    if (ids.has(customId)) refuse(line, `custom_id "${customId.slice(0, 100)}" is used twice.`);
    ids.add(customId);
    if (method !== 'POST') refuse(line, 'method must be "POST".');
    if (typeof url !== 'string' || !Object.hasOwn(BATCH_ENDPOINTS, url))
      refuse(line, `url must be one of ${Object.keys(BATCH_ENDPOINTS).join(', ')}.`);
    if (!isObject(body) || typeof body.model !== 'string' || body.model.length === 0)
      refuse(line, 'body.model must be a non-empty string.');
    models.add(body.model);
    worstCaseNanoUsd += lineWorstCase(body, url, pricing, line);
    lines++;
  }
  if (lines === 0) throw new ApiError('invalid_request', 'The batch file holds no request.', { param: 'file' });
  return { models: [...models], lines, worstCaseNanoUsd };
}
