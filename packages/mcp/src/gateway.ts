// The MCP gateway: `/<server>` (Streamable HTTP) behind the chain's stages; a tools/call goes to the server only once
// allowed, priced, and past the limits and the budget reservation, and is recorded.
import express from 'express';
import type { NextFunction, Request, RequestHandler, Response, Router } from 'express';
import { CallToolRequestSchema, isInitializeRequest, isJSONRPCRequest } from '@modelcontextprotocol/sdk/types.js';
import type { RequestId } from '@modelcontextprotocol/sdk/types.js';
import { ApiError, chain, renderApiError } from '@tollgate/core';
import { asyncRoute } from '@tollgate/core/checks';
import { speakJsonRpc } from './json-rpc-errors.js';
import { resolveMcpOptions } from './options.js';
import type { McpGatewayOptions, McpServerEntry, ToolCallMeter } from './options.js';
import { McpSessions } from './sessions.js';
import type { McpSession } from './sessions.js';
import { toolPolicy } from './tool-policy.js';
import type { ToolPolicy } from './tool-policy.js';

export interface McpGateway {
  /** Serves `/:server`: mount it where the servers live (the gateway mounts it at `/mcp`). */
  readonly router: Router;
  /** Closes every session (and its session with the configured server). */
  close(): Promise<void>;
}

/** The tools/call of a POST body, when it is one request calling a tool; `batched` when a batch holds one. */
function toolCallIn(body: unknown): { id: RequestId; name: string } | 'batched' | undefined {
  if (Array.isArray(body))
    return body.some((message) => isJSONRPCRequest(message) && message.method === 'tools/call') ? 'batched' : undefined;
  if (!isJSONRPCRequest(body) || body.method !== 'tools/call') return undefined;
  // A malformed call is the SDK's to refuse (invalid params); its handler never sees it.
  const call = CallToolRequestSchema.safeParse(body);
  return call.success ? { id: body.id, name: call.data.params.name } : undefined;
}

/**
 * Admits a tools/call: the tool must be allowed to the caller, then it is priced (the meter takes charge of its record)
 * and `limitAndReserve` runs (suspensions, then the limits and the budget reservation, all or nothing); only then does
 * the session's server handler forward it.
 */
function toolCallAdmission(policy: ToolPolicy, meter: ToolCallMeter, limitAndReserve: RequestHandler) {
  return function admitToolCall(
    req: Request,
    res: Response,
    next: NextFunction,
    entry: McpServerEntry,
    session: McpSession,
    call: { id: RequestId; name: string },
  ): void {
    const ctx = req.tollgate;
    ctx.set('mcp.callId', call.id);
    const tool = `${entry.name}/${call.name}`;
    if (!policy.allows(ctx.identity!, tool))
      return renderApiError(
        new ApiError('tool_not_allowed', `The tool "${tool}" is not available to this key.`, { param: 'name' }),
        req,
        res,
      );
    if (session.holds(call.id))
      return renderApiError(
        new ApiError('invalid_request', `The request id ${JSON.stringify(call.id)} is already in use in this session.`),
        req,
        res,
      );
    const metered = meter(req, res, { tool, costNanoUsd: policy.priceOf(entry.name, call.name) });
    limitAndReserve(req, res, (error?: unknown) => {
      if (error) return next(error);
      session.admit(call.id, metered, res);
      session.handle(req, res, req.body).catch(next);
    });
  };
}

/** The route's handlers after the stages: the server's lookup, a client's message, its other exchanges. */
function mcpHandlers(entries: Map<string, McpServerEntry>, sessions: McpSessions, admitToolCall: ToolCallAdmission) {
  /** The server the path names (`findServer` answered 404 for any other). */
  const entryOf = (req: Request) => entries.get(String(req.params.server))!;
  /** The caller's session named in the request, or the SDK transport's 404 (to any other caller it does not exist). */
  const sessionOf = (req: Request, res: Response): McpSession | undefined => {
    const id = req.headers['mcp-session-id'];
    const session = typeof id === 'string' ? sessions.find(entryOf(req), id, req.tollgate.identity!.keyId) : undefined;
    if (session) return session;
    const message =
      id === undefined ? 'Bad Request: Mcp-Session-Id header is required; initialize first.' : 'Session not found';
    renderApiError(new ApiError(id === undefined ? 'invalid_request' : 'not_found', message), req, res);
    return undefined;
  };

  const findServer = function findMcpServer(req: Request, res: Response, next: NextFunction): void {
    const name = String(req.params.server);
    if (entries.has(name)) return next();
    renderApiError(new ApiError('not_found', `No MCP server "${name.slice(0, 64)}" here.`), req, res);
  };

  const handleMessage = asyncRoute(async function handleMcpMessage(req: Request, res: Response, next: NextFunction) {
    const entry = entryOf(req);
    const body: unknown = req.body;
    if (req.headers['mcp-session-id'] === undefined && isInitializeRequest(body)) {
      let session: McpSession;
      try {
        session = await sessions.open(entry, req, res);
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error);
        return renderApiError(
          new ApiError('upstream_error', `The MCP server "${entry.name}" could not be reached: ${reason}`, {
            cause: error,
          }),
          req,
          res,
        );
      }
      return session.handle(req, res, body);
    }
    const session = sessionOf(req, res);
    if (!session) return;
    const call = toolCallIn(body);
    if (call === 'batched')
      return renderApiError(
        new ApiError('invalid_request', 'Send tools/call alone, not in a batch: each call is admitted on its own.'),
        req,
        res,
      );
    if (call) return admitToolCall(req, res, next, entry, session, call);
    return session.handle(req, res, body);
  });

  const handleSessionRequest = function handleMcpSession(req: Request, res: Response, next: NextFunction) {
    const session = sessionOf(req, res);
    if (session) session.handle(req, res).catch(next);
  };
  return { findServer, handleMessage, handleSessionRequest };
}

type ToolCallAdmission = ReturnType<typeof toolCallAdmission>;

function answerMethodNotAllowed(req: Request, res: Response): void {
  renderApiError(
    new ApiError(
      'method_not_allowed',
      `${req.method} is not allowed on ${(req.baseUrl + req.path).slice(0, 200)}: use POST, GET or DELETE.`,
      { headers: { allow: 'GET, POST, DELETE' } },
    ),
    req,
    res,
  );
}

/**
 * The MCP gateway of `options.servers`: `POST` (the client's messages), `GET` (its stream of the server's messages)
 * and `DELETE` (the session's end) at `/<server>`, each running the stages `options.stages` hands it (see McpStages).
 */
export function createMcpGateway(options: McpGatewayOptions): McpGateway {
  const entries = resolveMcpOptions(options);
  const policy = toolPolicy(options.tools ?? {}, options.servers);
  const sessions = new McpSessions(policy);
  const { admit, readBody, permissions = [], meter, limitAndReserve } = options.stages;
  const admitToolCall = toolCallAdmission(policy, meter, chain(...limitAndReserve) as RequestHandler);
  const { findServer, handleMessage, handleSessionRequest } = mcpHandlers(entries, sessions, admitToolCall);

  // The chain's order (route, admission, body, the server as the call's declaration, permissions, the call).
  const router = express.Router({ caseSensitive: true, strict: true });
  router.post('/:server', speakJsonRpc, ...admit, ...readBody, findServer, ...permissions, handleMessage);
  router.get('/:server', speakJsonRpc, ...admit, findServer, ...permissions, handleSessionRequest);
  router.delete('/:server', speakJsonRpc, ...admit, findServer, ...permissions, handleSessionRequest);
  router.all('/:server', speakJsonRpc, answerMethodNotAllowed);
  return { router, close: () => sessions.close() };
}
