// The MCP gateway: `/mcp/<server>` (Streamable HTTP) behind the gateway's keys; a tools/call goes to the server only
// once allowed, counted against `toolCallsPerMinute` and its price reserved against the budgets, and is recorded.
import express from 'express';
import type { NextFunction, Request, RequestHandler, Response, Router } from 'express';
import { CallToolRequestSchema, isInitializeRequest, isJSONRPCRequest } from '@modelcontextprotocol/sdk/types.js';
import type { RequestId } from '@modelcontextprotocol/sdk/types.js';
import { ApiError, chain, parseDuration, renderApiError } from '@tollgate/core';
import { noteRefusal, setErrorHeaders } from '@tollgate/core/kit';
import type { ErrorRenderer, TollgateStores } from '@tollgate/core';
import { combineLimits } from '@tollgate/ratelimit';
import type { BudgetGuard } from '@tollgate/budget';
import { ConfigError } from './config/index.js';
import type { ProxyConfig } from './config/index.js';
import type { ProxyGuard } from './guard-setup.js';
import { toolCallLimitMiddleware } from './config/moving-callers.js';
import type { StoreFailureHandlers } from './limits-setup.js';
import type { ProxyMetering } from './metering-setup.js';
import { McpSessions } from './mcp-sessions.js';
import type { McpServerEntry, McpSession } from './mcp-sessions.js';
import { toolPolicy } from './mcp-tools.js';
import type { ToolPolicy } from './mcp-tools.js';

/**
 * The JSON-RPC code of a tools/call the gateway refused (not allowed, over a limit, past a budget, a store down):
 * `error.data.code` says which, as the HTTP routes' `error.code` does.
 */
export const TOOL_CALL_REFUSED = -32003;
/** The code of the gateway's answers to a whole HTTP exchange (no session, bad body), as the SDK's transport gives them. */
const EXCHANGE_ERROR = -32000;
/** The SDK transport's code for a session it does not know (HTTP 404): the client starts a new one. */
const SESSION_NOT_FOUND = -32001;

declare module '@tollgate/core' {
  interface ContextVariableMap {
    /** The JSON-RPC id of the tools/call the MCP route is judging: its refusal answers that request. */
    'mcp.callId': RequestId;
  }
}

/**
 * Refusals on the MCP route as JSON-RPC errors: a tools/call's (its id set) as that request's answer, HTTP 200, so the
 * client's SDK reads it as the call's error; any other (auth, the body, the session) with its HTTP status and id null,
 * as the SDK's own transport answers those. `error.data` carries the gateway's `code`, `type`, `status` and, when
 * retrying later helps, `retryAfter` (seconds).
 */
export const renderJsonRpcError: ErrorRenderer = function renderJsonRpcError(error, req, res) {
  noteRefusal(req, res, error);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  setErrorHeaders(error, res);
  const callId = (req as Request).tollgate.get('mcp.callId');
  const retryAfter = Number(error.headers['Retry-After'] ?? error.headers['retry-after']);
  const code =
    callId !== undefined ? TOOL_CALL_REFUSED : error.code === 'not_found' ? SESSION_NOT_FOUND : EXCHANGE_ERROR;
  const body = JSON.stringify({
    jsonrpc: '2.0',
    id: callId ?? null,
    error: {
      code,
      message: error.message,
      data: {
        code: error.code,
        type: error.type,
        status: error.status,
        ...(Number.isFinite(retryAfter) ? { retryAfter } : {}),
      },
    },
  });
  res.statusCode = callId !== undefined ? 200 : error.status;
  res.setHeader('content-type', 'application/json; charset=utf-8');
  res.setHeader('content-length', Buffer.byteLength(body));
  res.end(body);
};

/** Every refusal of the route answers in JSON-RPC (see renderJsonRpcError). */
function speakJsonRpc(req: Request, _res: Response, next: NextFunction): void {
  req.tollgate.renderError = renderJsonRpcError;
  next();
}

/** The config's servers, resolved once: their headers read from the environment (a missing one stops the start). */
function serverEntries(config: ProxyConfig, env: NodeJS.ProcessEnv): Map<string, McpServerEntry> {
  const entries = new Map<string, McpServerEntry>();
  for (const [name, server] of Object.entries(config.mcpServers ?? {})) {
    const headers: Record<string, string> = {};
    for (const [header, variable] of Object.entries(server.headers ?? {})) {
      const value = env[variable];
      if (!value)
        throw new ConfigError(
          `mcpServers.${name}.headers.${header} names ${variable}, which is not set in the environment`,
        );
      headers[header] = value;
    }
    entries.set(name, {
      name,
      url: new URL(server.url),
      headers,
      callTimeoutMs: parseDuration(server.callTimeout ?? '60s'),
      idleTimeoutMs: parseDuration(server.sessionIdleTimeout ?? '30m'),
    });
  }
  return entries;
}

/** What the MCP gateway shares with the provider routes. */
export interface McpGatewayParts {
  /** Auth, as the provider routes run it. */
  identify: RequestHandler[];
  /** The required scope and the attribution (end user, feature, tags), after auth. */
  permissions: RequestHandler[];
  guarding: ProxyGuard;
  /** The body reader the provider routes use (read after auth, under the guard's deadline). */
  readBody: RequestHandler;
  limitStores: TollgateStores;
  storeFailures: StoreFailureHandlers;
  budget: BudgetGuard;
  metering: ProxyMetering;
  env: NodeJS.ProcessEnv;
}

export interface McpGateway {
  /** Serves `/:server`: mount it at `/mcp`. */
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
 * and `checks` run (suspensions, then the repeat count, `toolCallsPerMinute` and the budget reservation, all or
 * nothing); only then does the session's server handler forward it.
 */
function toolCallAdmission(policy: ToolPolicy, metering: ProxyMetering, checks: RequestHandler) {
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
    const metered = metering.chargeToolCall(req, res, { tool, costNanoUsd: policy.priceOf(entry.name, call.name) });
    checks(req, res, (error?: unknown) => {
      if (error) return next(error);
      session.admit(call.id, metered, res);
      session.handle(req, res, req.body).catch(next);
    });
  };
}

/**
 * The MCP gateway of the config's `mcpServers`: `POST` (the client's messages), `GET` (its stream of the server's
 * messages) and `DELETE` (the session's end) at `/<server>`, behind the same auth, scope, guard and body reading as the
 * provider routes.
 */
export function createMcpGateway(config: ProxyConfig, parts: McpGatewayParts): McpGateway {
  const entries = serverEntries(config, parts.env);
  const policy = toolPolicy(config);
  const sessions = new McpSessions(policy);
  const { guarding, limitStores, storeFailures, budget, metering } = parts;
  const checks = chain(
    ...guarding.afterEstimate,
    combineLimits(
      ...guarding.limitChecks,
      ...toolCallLimitMiddleware(config, limitStores, storeFailures, guarding.limitScale),
      budget,
    ),
  ) as RequestHandler;
  const admitToolCall = toolCallAdmission(policy, metering, checks);

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

  const handleMessage = async function handleMcpMessage(req: Request, res: Response, next: NextFunction) {
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
  };

  const handleSessionRequest = function handleMcpSession(req: Request, res: Response, next: NextFunction) {
    const session = sessionOf(req, res);
    if (session) session.handle(req, res).catch(next);
  };

  const admit = [speakJsonRpc, ...guarding.beforeAuth, ...parts.identify, ...parts.permissions, findServer];
  const router = express.Router({ caseSensitive: true, strict: true });
  router.post('/:server', ...admit, ...guarding.afterAuth(parts.readBody), handleMessage);
  router.get('/:server', ...admit, handleSessionRequest);
  router.delete('/:server', ...admit, handleSessionRequest);
  router.all('/:server', speakJsonRpc, function answerMethodNotAllowed(req: Request, res: Response) {
    renderApiError(
      new ApiError(
        'method_not_allowed',
        `${req.method} is not allowed on ${(req.baseUrl + req.path).slice(0, 200)}: use POST, GET or DELETE.`,
        {
          headers: { allow: 'GET, POST, DELETE' },
        },
      ),
      req,
      res,
    );
  });
  return { router, close: () => sessions.close() };
}
