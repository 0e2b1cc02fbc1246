// The Batch API's routes from the gateway's parts, when an OpenAI upstream serves them (docs/batch.md).
import type { RequestHandler } from 'express';
import { resolveUpstreamKey } from '@tollgate/router/upstreams';
import type { BatchRouteSpec } from '../routes.js';
import type { BatchBook } from './batch-book.js';
import { batchHandlers } from './batch-routes.js';
import type { BatchParts, BatchUpstream } from './batch-routes.js';

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

/** The Batch API's routes, in the order they are mounted. */
export function batchRouteSpecs(parts: BatchParts): BatchRouteSpec[] {
  const handlers = batchHandlers(parts);
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

export type { BatchBook };
