// The gateway's side of a configured MCP server: connecting its SDK client, calling a tool under the meter's watch,
// listing the tools a caller may see. Sessions (sessions.ts) and stateless exchanges (stateless.ts) share it.
import { createRequire } from 'node:module';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
import type { CallToolRequest, CallToolResult, ListToolsResult, Progress } from '@modelcontextprotocol/sdk/types.js';
import type { Identity } from '@tollgate/core';
import type { ToolCallOutcome } from '@tollgate/core/provider-call';
import type { McpServerEntry } from './options.js';
import type { ToolPolicy } from './tool-policy.js';

export const { version } = createRequire(import.meta.url)('../package.json') as { version: string };

/** The gateway's SDK client of a configured server, before it connects. */
export function upstreamClient(): Client {
  return new Client({ name: 'tollgate', version });
}

/** Connects `upstream` to `entry`'s server: its session with the server initialized. */
export async function connectUpstream(upstream: Client, entry: McpServerEntry): Promise<void> {
  await upstream.connect(new StreamableHTTPClientTransport(entry.url, { requestInit: { headers: entry.headers } }), {
    timeout: entry.callTimeoutMs,
  });
}

/** Ends the session with the configured server (best effort: it may be gone already), then its client. */
export async function endUpstream(upstream: Client): Promise<void> {
  const transport = upstream.transport;
  if (transport instanceof StreamableHTTPClientTransport) await transport.terminateSession().catch(() => undefined);
  await upstream.close().catch(() => undefined);
}

/** What an HTTP route would have answered for a call the server did not answer with a result. */
function failedStatus(error: unknown): number {
  if (!(error instanceof McpError)) return 502;
  if (error.code === ErrorCode.RequestTimeout) return 504;
  // The server refused the call as the client made it (an unknown tool, bad arguments).
  if ([ErrorCode.InvalidParams, ErrorCode.InvalidRequest, ErrorCode.MethodNotFound].includes(error.code)) return 400;
  return 502;
}

/** The server's own JSON-RPC errors reach the client as they are; a failure to reach it says so. */
export function upstreamFailure(error: unknown, server: string): McpError {
  if (error instanceof McpError) return error;
  const reason = error instanceof Error ? error.message : String(error);
  return new McpError(ErrorCode.InternalError, `The MCP server "${server}" did not answer: ${reason}`, {
    code: 'upstream_error',
  });
}

interface UpstreamCallOptions {
  signal: AbortSignal;
  /** The server's progress, for a client that asked for it. */
  onprogress?: (progress: Progress) => void;
}

/**
 * Calls an admitted tool on the server and reports the outcome to `finish` (the metered call's) on every path: a
 * result is billed unless it is an error; a failure reaches the caller as `upstreamFailure` says.
 */
export async function callUpstreamTool(
  upstream: Client,
  entry: McpServerEntry,
  params: CallToolRequest['params'],
  finish: (outcome: ToolCallOutcome) => void,
  options: UpstreamCallOptions,
): Promise<CallToolResult> {
  const { name, arguments: args } = params;
  let outcome: ToolCallOutcome = { status: 502, billed: false };
  try {
    const result = (await upstream.callTool({ name, ...(args ? { arguments: args } : {}) }, undefined, {
      signal: options.signal,
      timeout: entry.callTimeoutMs,
      ...(options.onprogress ? { onprogress: options.onprogress } : {}),
    })) as CallToolResult;
    // A result that is an error (the tool failed, or refused its arguments) costs nothing.
    outcome = { status: 200, billed: result.isError !== true };
    return result;
  } catch (error) {
    outcome = { status: failedStatus(error), billed: false };
    throw upstreamFailure(error, entry.name);
  } finally {
    finish(outcome);
  }
}

/** The server's tools that `identity` may call (the others are not shown). */
export async function listUpstreamTools(
  upstream: Client,
  entry: McpServerEntry,
  policy: ToolPolicy,
  identity: Identity,
  params: { cursor?: string } | undefined,
  signal: AbortSignal,
): Promise<ListToolsResult> {
  let listed;
  try {
    listed = await upstream.listTools(params, { signal, timeout: entry.callTimeoutMs });
  } catch (error) {
    throw upstreamFailure(error, entry.name);
  }
  return { ...listed, tools: listed.tools.filter((tool) => policy.allows(identity, `${entry.name}/${tool.name}`)) };
}
