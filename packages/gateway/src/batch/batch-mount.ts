// The Batch API's routes from the gateway's parts, when an OpenAI upstream serves them (docs/batch.md).
import type { RequestHandler } from 'express';
import { resolveUpstreamKey } from '@tollgate/router/upstreams';
import type { BatchRouteSpec } from '../routes.js';
import type { BatchHandlers, BatchUpstream } from './batch-routes.js';

/** The first upstream of the OpenAI kind, which Batch jobs go to; undefined (no Batch routes) without one. */
export function batchUpstream(
  upstreams:
    | Readonly<
        Record<string, { api: string; baseUrl: string; apiKey?: string | undefined; apiKeyEnv?: string | undefined }>
      >
    | undefined,
  env: NodeJS.ProcessEnv = process.env,
): BatchUpstream | undefined {
  for (const upstream of Object.values(upstreams ?? {}))
    if (upstream.api === 'openai') return { baseUrl: upstream.baseUrl, apiKey: resolveUpstreamKey(upstream, env) };
  return undefined;
}

/** How often the jobs nobody polls are asked about upstream. */
export const BATCH_SWEEP_MS = 5 * 60_000;

/** Open jobs asked about per sweep: a sweep's calls to the upstream stay bounded however many jobs are open. */
const SWEPT_JOBS = 100;

/**
 * Settles the jobs nobody polls: every `intervalMs`, up to SWEPT_JOBS open jobs are asked about upstream (a sweep
 * still running skips the next tick). Returns the stop.
 */
export function sweepBatches(
  { sweep }: Pick<BatchHandlers, 'sweep'>,
  intervalMs: number,
  log: (line: string) => void,
): () => void {
  let sweeping = false;
  const timer = setInterval(() => {
    if (sweeping) return;
    sweeping = true;
    sweep(SWEPT_JOBS)
      .catch((error: unknown) =>
        log(`tollgate batch: the sweep failed: ${error instanceof Error ? error.message : String(error)}`),
      )
      .finally(() => (sweeping = false));
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}

/** The Batch API's routes, in the order they are mounted. */
export function batchRouteSpecs(handlers: BatchHandlers): BatchRouteSpec[] {
  const route = (method: 'get' | 'post', path: string, body: BatchRouteSpec['body'], call: RequestHandler) => ({
    method,
    path,
    body,
    call,
  });
  return [
    route('post', '/v1/files', 'form', handlers.uploadFile),
    route('get', '/v1/files/:id', 'none', handlers.readFile),
    route('get', '/v1/files/:id/content', 'none', handlers.readFile),
    route('post', '/v1/batches', 'json', handlers.createBatch),
    route('get', '/v1/batches/:id', 'none', handlers.batchCall),
    route('post', '/v1/batches/:id/cancel', 'none', handlers.batchCall),
  ];
}
