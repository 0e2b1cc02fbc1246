// The MCP gateway: `/<server>` (Streamable HTTP) behind the chain's stages; a tools/call goes to the server only once
// allowed, priced, and past the limits and the budget reservation, and is recorded.
import express from 'express';
import type { NextFunction, Request, RequestHandler, Response, Router } from 'express';
import { CallToolRequestSchema, isInitializeRequest, isJSONRPCRequest } from '@modelcontextprotocol/sdk/types.js';
import type { RequestId } from '@modelcontextprotocol/sdk/types.js';
import { ApiError, chain, renderApiError } from '@tollgate/core';
import { asyncRoute } from '@tollgate/core/checks';
import type { MeteredToolCall } from '@tollgate/core/provider-call';
import { speakJsonRpc } from './json-rpc-errors.js';
import { resolveMcpOptions } from './options.js';
import type { McpGatewayOptions, McpServerEntry, ToolCallMeter } from './options.js';
import { McpSessions } from './sessions.js';
import type { McpSession } from './sessions.js';
import { StatelessExchanges } from './stateless.js';
import { bodyMismatch, declaredRouting, speaksStatelessRevision } from './routing-headers.js';
import type { RoutingHeaders } from './routing-headers.js';
import { toolPolicy } from './tool-policy.js';
import type { ToolPolicy } from './tool-policy.js';

export interface McpGateway {
  /** Serves `/:server`: mount it where the servers live (the gateway mounts it at `/mcp`). */
  readonly router: Router;
  /** Closes every session (and its session with the configured server), and the stateless requests' clients. */
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

/** Where an admitted call goes: the caller's session, or the stateless exchange; `holds` refuses an id in use. */
interface ToolCallTarget {
  holds?(id: RequestId): boolean;
  forward(metered: MeteredToolCall): Promise<void>;
}

/**
 * Admits a tools/call: the tool must be allowed to the caller, then it is priced (the meter takes charge of its record)
 * and `limitAndReserve` runs (suspensions, then the limits and the budget reservation, all or nothing); only then does
 * `target` forward it to the server.
 */
function toolCallAdmission(policy: ToolPolicy, meter: ToolCallMeter, limitAndReserve: RequestHandler) {
  return function admitToolCall(
    req: Request,
    res: Response,
    next: NextFunction,
    entry: McpServerEntry,
    call: { id: RequestId; name: string },
    target: ToolCallTarget,
  ): void {
    const ctx = req.tollgate;
    ctx.set('mcp.callId', call.id);
    const tool = `${entry.name}/${call.name}`;
    if (!policy.allows(ctx.identity!, tool)) return renderApiError(toolNotAllowed(tool), req, res);
    if (target.holds?.(call.id))
      return renderApiError(
        new ApiError('invalid_request', `The request id ${JSON.stringify(call.id)} is already in use in this session.`),
        req,
        res,
      );
    const metered = meter(req, res, { tool, costNanoUsd: policy.priceOf(entry.name, call.name) });
    limitAndReserve(req, res, (error?: unknown) => {
      if (error) return next(error);
      target.forward(metered).catch(next);
    });
  };
}

function toolNotAllowed(tool: string): ApiError {
  return new ApiError('tool_not_allowed', `The tool "${tool.slice(0, 200)}" is not available to this key.`, {
    param: 'name',
  });
}

/**
 * On the stateless revision, before the body is read: the request must name its method (and tool) in `Mcp-Method` /
 * `Mcp-Name`, and a tools/call of a tool the caller may not call is refused from the headers alone.
 */
function statelessScreen(entries: Map<string, McpServerEntry>, policy: ToolPolicy) {
  return function screenStatelessRequest(req: Request, res: Response, next: NextFunction): void {
    if (!speaksStatelessRevision(req.headers)) return next();
    const routing = declaredRouting(req.headers);
    if (routing instanceof ApiError) return renderApiError(routing, req, res);
    req.tollgate.set('mcp.routing', routing);
    const server = String(req.params.server);
    const tool = `${server}/${routing.name}`;
    if (routing.method === 'tools/call' && entries.has(server) && !policy.allows(req.tollgate.identity!, tool))
      return renderApiError(toolNotAllowed(tool), req, res);
    next();
  };
}

/** The route's handlers after the stages: the server's lookup, a client's message, its other exchanges. */
function mcpHandlers(
  entries: Map<string, McpServerEntry>,
  sessions: McpSessions,
  stateless: StatelessExchanges,
  admitToolCall: ToolCallAdmission,
) {
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

  /** A 2026-07-28 request, its headers held to its body: answered on its own, a tools/call once admitted. */
  const handleStatelessMessage = (req: Request, res: Response, next: NextFunction, routing: RoutingHeaders) => {
    const entry = entryOf(req);
    const body: unknown = req.body;
    const mismatch = bodyMismatch(routing, body);
    if (mismatch) return renderApiError(mismatch, req, res);
    // A notification (or a response: the revision's servers ask clients nothing) needs no answer.
    if (!isJSONRPCRequest(body)) return void res.status(202).end();
    if (body.method !== 'tools/call') return stateless.answer(req, res, entry, body.id, body.method, body.params);
    const parsed = CallToolRequestSchema.safeParse(body);
    if (!parsed.success)
      return renderApiError(new ApiError('invalid_request', 'tools/call needs params.name (a string).'), req, res);
    return admitToolCall(
      req,
      res,
      next,
      entry,
      { id: body.id, name: parsed.data.params.name },
      {
        forward: (metered) => stateless.callTool(res, entry, body.id, parsed.data, metered),
      },
    );
  };

  const handleMessage = asyncRoute(async function handleMcpMessage(req: Request, res: Response, next: NextFunction) {
    const routing = req.tollgate.get('mcp.routing');
    if (routing) return handleStatelessMessage(req, res, next, routing);
    const entry = entryOf(req);
    const body: unknown = req.body;
    const mismatch = bodyMismatch(undefined, body);
    if (mismatch) return renderApiError(mismatch, req, res);
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
    if (call)
      return admitToolCall(req, res, next, entry, call, {
        holds: (id) => session.holds(id),
        forward: (metered) => {
          session.admit(call.id, metered, res);
          return session.handle(req, res, req.body);
        },
      });
    return session.handle(req, res, body);
  });

  const handleSessionRequest = function handleMcpSession(req: Request, res: Response, next: NextFunction) {
    if (speaksStatelessRevision(req.headers)) return answerMethodNotAllowed(req, res, STATELESS_METHODS);
    const session = sessionOf(req, res);
    if (session) session.handle(req, res).catch(next);
  };
  return { findServer, handleMessage, handleSessionRequest };
}

type ToolCallAdmission = ReturnType<typeof toolCallAdmission>;

/** The HTTP methods each revision serves: the stateless one has no stream to GET and no session to DELETE. */
const SESSION_METHODS = { allow: 'GET, POST, DELETE', use: 'POST, GET or DELETE' };
const STATELESS_METHODS = { allow: 'POST', use: 'POST' };

function answerMethodNotAllowed(req: Request, res: Response, methods = SESSION_METHODS): void {
  renderApiError(
    new ApiError(
      'method_not_allowed',
      `${req.method} is not allowed on ${(req.baseUrl + req.path).slice(0, 200)}: use ${methods.use}.`,
      { headers: { allow: methods.allow } },
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
  const stateless = new StatelessExchanges(policy);
  const { admit, readBody, permissions = [], meter, limitAndReserve } = options.stages;
  const admitToolCall = toolCallAdmission(policy, meter, chain(...limitAndReserve));
  const { findServer, handleMessage, handleSessionRequest } = mcpHandlers(entries, sessions, stateless, admitToolCall);
  const screen = statelessScreen(entries, policy);

  // The chain's order (route, admission, a 2026-07-28 request's headers, body, the server as the call's declaration,
  // permissions, the call).
  const router = express.Router({ caseSensitive: true, strict: true });
  router.post('/:server', speakJsonRpc, ...admit, screen, ...readBody, findServer, ...permissions, handleMessage);
  router.get('/:server', speakJsonRpc, ...admit, findServer, ...permissions, handleSessionRequest);
  router.delete('/:server', speakJsonRpc, ...admit, findServer, ...permissions, handleSessionRequest);
  router.all('/:server', speakJsonRpc, (req, res) => answerMethodNotAllowed(req, res));
  return { router, close: async () => void (await Promise.all([sessions.close(), stateless.close()])) };
}
