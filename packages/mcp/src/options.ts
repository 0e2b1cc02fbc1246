// createMcpGateway's options: the MCP servers, who may call which tool, and the chain's stages it runs; resolved once.
import type { Request, RequestHandler, Response } from 'express';
import { TollgateError } from '@tollgate/core';
import { assertKnownOptions } from '@tollgate/core/options';
import type { MeteredToolCall, PricedToolCall } from '@tollgate/core/provider-call';

/** One MCP server (Streamable HTTP) served at `/<name>`, its tools named `<name>/<tool>`. */
export interface McpServerOptions {
  /** The server's endpoint, e.g. `http://search.internal:3001/mcp`. */
  url: string | URL;
  /** Headers sent to the server with every message (its credentials: never the client's). @default {} */
  headers?: Record<string, string>;
  /** What one call of a tool costs, in nano-USD, by tool name; a tool not listed costs nothing. @default {} */
  nanoUsdPerCall?: Record<string, number>;
  /** How long one tool call (or tools/list) may take, in milliseconds. @default 60_000 */
  callTimeoutMs?: number;
  /** A client's session unused this long is closed (the client initializes anew), in milliseconds. @default 1_800_000 */
  sessionIdleTimeoutMs?: number;
}

/**
 * Which tools a caller may call: tool patterns (`server/tool`, `server/*`, `*`) listed by its tier, its tenant or its
 * key (the identity's `tools`); any of them grants a tool. Nothing lists a tool by default.
 */
export interface McpToolGrants {
  /** Tool patterns by tier name. @default {} */
  tiers?: Record<string, readonly string[] | undefined>;
  /** The tier whose list applies to a caller whose tier is not in `tiers` (or who names none), as for models. */
  defaultTier?: string;
  /** Tool patterns by tenant id, besides the tenant's tier's. @default {} */
  tenants?: Record<string, readonly string[] | undefined>;
}

/** Meters a tool call at its price and takes charge of the request's record (metering's `toolMeter()`). */
export type ToolCallMeter = (req: Request, res: Response, call: PricedToolCall) => MeteredToolCall;

/**
 * The request chain's stages that the MCP route runs, in this order (its profile of the one chain): `admit` on every
 * exchange, then `readBody` on a POST, then the server named in the path is looked up, then `permissions`; a
 * tools/call is then judged by
 * its tool grant, priced by `meter`, and passes `limitAndReserve` before its server sees it. The route's other
 * messages (initialize, tools/list, notifications) run no meter and no limit. On MCP 2026-07-28 the route reads
 * `Mcp-Method` / `Mcp-Name` between `admit` and `readBody` (a tool not granted is refused there) and holds them to the
 * body once it is read.
 */
export interface McpStages {
  /** Who is calling and whether they may: refusals before auth, auth, the required scope, the attribution. */
  admit: readonly RequestHandler[];
  /** Reads the POST's JSON body into `req.body` (after auth, under whatever deadline the chain sets). */
  readBody: readonly RequestHandler[];
  /** Once the server is known: what the caller must hold (scope) and who the call is for (attribution). @default none */
  permissions?: readonly RequestHandler[];
  /** Prices a tools/call: its estimate is its price (no tokens), and its record is the meter's. */
  meter: ToolCallMeter;
  /** After the price: suspensions, then the tool-call limits and the budget reservation, all or nothing. */
  limitAndReserve: readonly RequestHandler[];
}

export interface McpGatewayOptions {
  /** The servers, by name: `/<name>` serves each (1-64 letters, digits, _ and -). */
  servers: Record<string, McpServerOptions>;
  /** Who may call which tool. @default nobody any tool */
  tools?: McpToolGrants;
  stages: McpStages;
}

/** A server, resolved: what a session with it needs. */
export interface McpServerEntry {
  name: string;
  url: URL;
  headers: Record<string, string>;
  callTimeoutMs: number;
  idleTimeoutMs: number;
}

/** MCP server names go in paths and tool names (`/mcp/search`, `search/web_search`). */
const SERVER_NAME = /^[A-Za-z0-9_-]{1,64}$/;
const CODE = 'ERR_TG_MCP_INVALID_OPTION';
const STAGES = ['admit', 'readBody', 'permissions', 'meter', 'limitAndReserve'] as const;

function invalid(message: string): TollgateError {
  return new TollgateError(CODE, `createMcpGateway(): ${message}`);
}

function positiveMs(value: number | undefined, fallback: number, at: string): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value <= 0)
    throw invalid(`${at} must be a positive whole number of milliseconds`);
  return value;
}

/** One server's options, checked, with their defaults. */
function resolveServer(name: string, server: McpServerOptions): McpServerEntry {
  assertKnownOptions(
    server,
    ['url', 'headers', 'nanoUsdPerCall', 'callTimeoutMs', 'sessionIdleTimeoutMs'],
    'ERR_TG_MCP_UNKNOWN_OPTION',
    `createMcpGateway() servers.${name}`,
  );
  if (!SERVER_NAME.test(name))
    throw invalid(`the server name "${name}" must be 1-64 letters, digits, _ and - (it is a path segment)`);
  let url: URL;
  try {
    url = new URL(server.url);
  } catch {
    throw invalid(`servers.${name}.url must be an http: or https: URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw invalid(`servers.${name}.url must be an http: or https: URL`);
  for (const [tool, price] of Object.entries(server.nanoUsdPerCall ?? {}))
    if (!Number.isSafeInteger(price) || price < 0)
      throw invalid(`servers.${name}.nanoUsdPerCall.${tool} must be a whole number of nano-USD, 0 or more`);
  return {
    name,
    url,
    headers: { ...server.headers },
    callTimeoutMs: positiveMs(server.callTimeoutMs, 60_000, `servers.${name}.callTimeoutMs`),
    idleTimeoutMs: positiveMs(server.sessionIdleTimeoutMs, 30 * 60_000, `servers.${name}.sessionIdleTimeoutMs`),
  };
}

/** The servers, resolved once, by name; every stage present (a missing one would run the route without it). */
export function resolveMcpOptions(options: McpGatewayOptions): Map<string, McpServerEntry> {
  assertKnownOptions(options, ['servers', 'tools', 'stages'], 'ERR_TG_MCP_UNKNOWN_OPTION', 'createMcpGateway');
  const stages = (options.stages ?? {}) as Partial<Record<(typeof STAGES)[number], unknown>>;
  for (const stage of STAGES) {
    const given = stages[stage];
    if (stage === 'permissions' && given === undefined) continue;
    const valid = stage === 'meter' ? typeof given === 'function' : Array.isArray(given);
    if (!valid) throw invalid(`stages.${stage} must be ${stage === 'meter' ? 'a function' : 'an array of handlers'}`);
  }
  return new Map(Object.entries(options.servers ?? {}).map(([name, server]) => [name, resolveServer(name, server)]));
}
