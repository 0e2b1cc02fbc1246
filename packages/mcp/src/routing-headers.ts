// MCP 2026-07-28's request headers (SEP-2243): which revision a request speaks, and the `Mcp-Method` / `Mcp-Name` it
// names, read before the body and held to it once the body is read (docs: packages/mcp/README.md#protocol-revisions).
import type { IncomingHttpHeaders } from 'node:http';
import { ApiError } from '@tollgate/core';

/** The stateless revision: no initialize, no session; every request names its method (and tool) in headers. */
export const STATELESS_PROTOCOL_VERSION = '2026-07-28';
/** Where a 2026-07-28 request's body names its revision (`params._meta`). */
const PROTOCOL_VERSION_META_KEY = 'io.modelcontextprotocol/protocolVersion';
/** The methods whose body field `Mcp-Name` mirrors (SEP-2243's table). */
const NAME_FIELD: Readonly<Record<string, 'name' | 'uri'>> = {
  'tools/call': 'name',
  'prompts/get': 'name',
  'resources/read': 'uri',
};
/** The headers a refusal can name (`ApiError.param`): json-rpc-errors.ts answers them as a header mismatch. */
export const ROUTING_HEADERS: ReadonlySet<string> = new Set(['MCP-Protocol-Version', 'Mcp-Method', 'Mcp-Name']);

/** What a request's headers say it is: its method and, for a tool, prompt or resource, its name. */
export interface RoutingHeaders {
  method: string;
  name: string | undefined;
}

declare module '@tollgate/core' {
  interface ContextVariableMap {
    /** A 2026-07-28 request's `Mcp-Method` / `Mcp-Name`, read before its body (which must then agree). */
    'mcp.routing': RoutingHeaders;
  }
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

/** True when the request speaks the stateless revision (its `MCP-Protocol-Version` header says so). */
export function speaksStatelessRevision(headers: IncomingHttpHeaders): boolean {
  return single(headers['mcp-protocol-version'])?.trim() === STATELESS_PROTOCOL_VERSION;
}

function headerMismatch(header: string, message: string): ApiError {
  return new ApiError('invalid_request', `Header mismatch: ${message}`, { param: header });
}

/**
 * The method and name a stateless request's headers declare, or the refusal of a request without them: the revision
 * requires `Mcp-Method` on every message and `Mcp-Name` on `tools/call`, `prompts/get` and `resources/read`.
 */
export function declaredRouting(headers: IncomingHttpHeaders): RoutingHeaders | ApiError {
  const method = single(headers['mcp-method'])?.trim();
  const name = single(headers['mcp-name'])?.trim();
  if (!method) return headerMismatch('Mcp-Method', `MCP ${STATELESS_PROTOCOL_VERSION} requires the Mcp-Method header.`);
  if (Object.hasOwn(NAME_FIELD, method) && !name)
    return headerMismatch('Mcp-Name', `MCP ${STATELESS_PROTOCOL_VERSION} requires the Mcp-Name header on ${method}.`);
  return { method, name };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The revision a message's body claims in `params._meta`, if it claims one. */
function claimedRevision(body: unknown): unknown {
  const params = isObject(body) ? body.params : undefined;
  const meta = isObject(params) ? params._meta : undefined;
  return isObject(meta) ? meta[PROTOCOL_VERSION_META_KEY] : undefined;
}

/**
 * Holds the headers to the body they travel with: the body's method, its name (`params.name` or `params.uri`) and
 * the revision it claims must be the headers' own, or the request is refused, never served by one and limited by the
 * other. `routing` is undefined on an older revision, where only a body claiming 2026-07-28 is refused.
 */
export function bodyMismatch(routing: RoutingHeaders | undefined, body: unknown): ApiError | undefined {
  const claimed = claimedRevision(body);
  if (!routing)
    return claimed === STATELESS_PROTOCOL_VERSION
      ? headerMismatch('MCP-Protocol-Version', `the body speaks ${STATELESS_PROTOCOL_VERSION}, the header does not.`)
      : undefined;
  if (Array.isArray(body))
    return new ApiError('invalid_request', `MCP ${STATELESS_PROTOCOL_VERSION} takes one message per request.`);
  if (claimed !== undefined && claimed !== STATELESS_PROTOCOL_VERSION)
    return headerMismatch('MCP-Protocol-Version', `the header says ${STATELESS_PROTOCOL_VERSION}, the body does not.`);
  const method = isObject(body) ? body.method : undefined;
  if (method !== routing.method)
    return headerMismatch(
      'Mcp-Method',
      `Mcp-Method says "${routing.method.slice(0, 64)}", the body's method does not.`,
    );
  const field = Object.hasOwn(NAME_FIELD, routing.method) ? NAME_FIELD[routing.method] : undefined;
  if (field === undefined) return undefined;
  const params = isObject(body) ? body.params : undefined;
  const named = isObject(params) ? params[field] : undefined;
  if (named !== routing.name)
    return headerMismatch(
      'Mcp-Name',
      `Mcp-Name says "${routing.name?.slice(0, 200)}", the body's params.${field} does not.`,
    );
  return undefined;
}
