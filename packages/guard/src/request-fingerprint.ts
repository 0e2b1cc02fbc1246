// The fingerprint of a request body with its volatile fields left out: the same prompt sent again has the same one.
import { hash } from 'node:crypto';

/**
 * Top-level fields that differ between sends of the same prompt without changing it: who asks
 * (`user`, `safety_identifier`, Anthropic's `metadata`), how the answer is delivered (`stream`,
 * `stream_options`), and ids a client or SDK puts on each request.
 */
const VOLATILE_FIELDS: readonly string[] = [
  'user',
  'stream',
  'stream_options',
  'metadata',
  'safety_identifier',
  'prompt_cache_key',
  'request_id',
  'requestId',
  'idempotency_key',
];

const VOLATILE = new Set(VOLATILE_FIELDS);

function withoutVolatile(body: Record<string, unknown>): Record<string, unknown> {
  const kept: Record<string, unknown> = {};
  for (const key in body) if (!VOLATILE.has(key)) kept[key] = body[key];
  return kept;
}

/**
 * A JSON-RPC 2.0 request (an MCP `tools/call`) as the same call sent again looks: its method and params, without
 * the id every send takes anew nor the params' `_meta` (a progress token per send).
 */
function jsonRpcCall(body: Record<string, unknown>): Record<string, unknown> | undefined {
  if (body.jsonrpc !== '2.0' || typeof body.method !== 'string') return undefined;
  const params = body.params;
  if (typeof params !== 'object' || params === null || Array.isArray(params) || !('_meta' in params))
    return { method: body.method, params };
  const { _meta: _perSend, ...kept } = params as Record<string, unknown>;
  return { method: body.method, params: kept };
}

/**
 * SHA-256 (base64url) of the body as JSON without its volatile fields (a JSON-RPC request: its
 * method and params, see `jsonRpcCall`); undefined when the body is not a JSON object (nothing to
 * compare). Field order counts: a loop sends the same bytes.
 * Costs about a microsecond for a small chat request and grows with the body (JSON.stringify and
 * the hash; figures in bench/RESULTS.md).
 */
export function requestFingerprint(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return undefined;
  const call = jsonRpcCall(body as Record<string, unknown>);
  if (call) return hash('sha256', JSON.stringify(call), 'base64url');
  const source = body as Record<string, unknown>;
  let canonical = source;
  for (const key in source) {
    if (VOLATILE.has(key)) {
      canonical = withoutVolatile(source);
      break;
    }
  }
  return hash('sha256', JSON.stringify(canonical), 'base64url');
}
