// MCP 2026-07-28 requests: each one answered on its own, with no initialize and no session, by the gateway's one
// client of the configured server (its credentials, its session): tools listed per caller, calls admitted first.
import type { Request, Response } from 'express';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
import type { CallToolRequest, RequestId } from '@modelcontextprotocol/sdk/types.js';
import type { MeteredToolCall } from '@tollgate/core/provider-call';
import type { McpServerEntry } from './options.js';
import { STATELESS_PROTOCOL_VERSION } from './routing-headers.js';
import { whenClosed } from './sessions.js';
import type { ToolPolicy } from './tool-policy.js';
import {
  callUpstreamTool,
  connectUpstream,
  endUpstream,
  listUpstreamTools,
  upstreamClient,
  upstreamFailure,
  version,
} from './upstream.js';

/** A 2026-07-28 result says it is complete (not a request for more input from the client). */
const COMPLETE = { resultType: 'complete' } as const;
/** A list shown to one caller (its grants filter it): never cached for anyone else. */
const PRIVATE_NOW = { ttlMs: 0, cacheScope: 'private' } as const;

function answer(res: Response, id: RequestId, result: Record<string, unknown>): void {
  res.status(200).json({ jsonrpc: '2.0', id, result: { ...result, ...COMPLETE } });
}

function answerError(res: Response, id: RequestId, error: McpError): void {
  // The SDK prefixes its message with the code; the client gets the server's own words.
  const message = error.message.replace(/^MCP error -?\d+: /, '');
  const body = { code: error.code, message, ...(error.data === undefined ? {} : { data: error.data }) };
  res.status(200).json({ jsonrpc: '2.0', id, error: body });
}

/** The stateless requests of a gateway's servers, served through one shared client of each server. */
export class StatelessExchanges {
  private readonly upstreams = new Map<McpServerEntry, Promise<Client>>();

  constructor(private readonly policy: ToolPolicy) {}

  /** Answers a request other than tools/call: `server/discover`, `ping`, `tools/list`; any other method is unknown. */
  async answer(req: Request, res: Response, entry: McpServerEntry, id: RequestId, method: string, params: unknown) {
    switch (method) {
      case 'server/discover':
        return answer(res, id, {
          ...PRIVATE_NOW,
          supportedVersions: [STATELESS_PROTOCOL_VERSION],
          capabilities: { tools: {} },
          _meta: { 'io.modelcontextprotocol/serverInfo': { name: `tollgate/${entry.name}`, version } },
        });
      case 'ping':
        return answer(res, id, {});
      case 'tools/list':
        return this.listTools(req, res, entry, id, params);
      default:
        return answerError(res, id, new McpError(ErrorCode.MethodNotFound, `Method not found: ${method.slice(0, 64)}`));
    }
  }

  /** Calls a tool the gateway admitted (allowed, priced, past the limits and the reservation) and answers it. */
  async callTool(res: Response, entry: McpServerEntry, id: RequestId, call: CallToolRequest, metered: MeteredToolCall) {
    let upstream: Client;
    try {
      upstream = await this.upstreamOf(entry);
    } catch (error) {
      return answerError(res, id, upstreamFailure(error, entry.name));
    }
    // Its client left while the server was being reached: the call is not made (and costs nothing).
    const finish = metered.start();
    if (!finish) return;
    const left = new AbortController();
    whenClosed(res, () => left.abort());
    try {
      answer(res, id, await callUpstreamTool(upstream, entry, call.params, finish, { signal: left.signal }));
    } catch (error) {
      this.forgetOnFailure(entry, error);
      answerError(res, id, upstreamFailure(error, entry.name));
    }
  }

  /** Ends the gateway's clients of the servers. */
  async close(): Promise<void> {
    const connected = await Promise.allSettled(this.upstreams.values());
    this.upstreams.clear();
    await Promise.all(connected.map((each) => (each.status === 'fulfilled' ? endUpstream(each.value) : undefined)));
  }

  private async listTools(req: Request, res: Response, entry: McpServerEntry, id: RequestId, params: unknown) {
    const cursor = typeof params === 'object' && params !== null ? (params as { cursor?: unknown }).cursor : undefined;
    const left = new AbortController();
    whenClosed(res, () => left.abort());
    try {
      const upstream = await this.upstreamOf(entry);
      const identity = req.tollgate.identity!;
      const listed = await listUpstreamTools(
        upstream,
        entry,
        this.policy,
        identity,
        typeof cursor === 'string' ? { cursor } : undefined,
        left.signal,
      );
      answer(res, id, { ...listed, ...PRIVATE_NOW });
    } catch (error) {
      this.forgetOnFailure(entry, error);
      answerError(res, id, upstreamFailure(error, entry.name));
    }
  }

  /** The gateway's client of `entry`'s server, connected on first use and again after it failed. */
  private upstreamOf(entry: McpServerEntry): Promise<Client> {
    const known = this.upstreams.get(entry);
    if (known) return known;
    const upstream = upstreamClient();
    const connecting = connectUpstream(upstream, entry).then(() => upstream);
    this.upstreams.set(entry, connecting);
    const forget = () => {
      if (this.upstreams.get(entry) === connecting) this.upstreams.delete(entry);
    };
    upstream.onclose = forget;
    connecting.catch(forget);
    return connecting;
  }

  /** A failure to reach the server (not its own JSON-RPC error) drops the client: the next request connects anew. */
  private forgetOnFailure(entry: McpServerEntry, error: unknown): void {
    const unreached =
      error instanceof McpError &&
      (error.code === ErrorCode.ConnectionClosed ||
        (error.data as { code?: unknown } | undefined)?.code === 'upstream_error');
    if (!unreached) return;
    const known = this.upstreams.get(entry);
    this.upstreams.delete(entry);
    void known?.then(endUpstream, () => undefined);
  }
}
