// Refusals on the MCP route as JSON-RPC errors, since MCP clients read JSON-RPC: the gateway's code rides in `data`.
import type { NextFunction, Request, Response } from 'express';
import type { RequestId } from '@modelcontextprotocol/sdk/types.js';
import { noteRefusal, setErrorHeaders } from '@tollgate/core/checks';
import { getContext } from '@tollgate/core';
import type { ApiError, ErrorRenderer } from '@tollgate/core';
import { ROUTING_HEADERS } from './routing-headers.js';

/**
 * The JSON-RPC code of a tools/call the gateway refused (not allowed, over a limit, past a budget, a store down):
 * `error.data.code` says which, as the HTTP routes' `error.code` does.
 */
export const TOOL_CALL_REFUSED = -32003;
/** The code of the gateway's answers to a whole HTTP exchange (no session, bad body), as the SDK's transport gives them. */
const EXCHANGE_ERROR = -32000;
/**
 * MCP 2026-07-28's HeaderMismatch (HTTP 400): the routing headers are missing or disagree with the body. -32020 is the
 * revision's schema constant as the SDK (@modelcontextprotocol/client 2.x) emits it; SEP-2243's text said -32001.
 */
export const HEADER_MISMATCH = -32020;
/** The SDK transport's code for a session it does not know (HTTP 404): the client starts a new one. */
const SESSION_NOT_FOUND = -32001;

declare module '@tollgate/core' {
  interface ContextVariableMap {
    /** The JSON-RPC id of the tools/call the MCP route is judging: its refusal answers that request. */
    'mcp.callId': RequestId;
  }
}

/** A refused tools/call (also one refused from its headers, before its id was read), a header mismatch, or another. */
function jsonRpcCodeOf(error: ApiError, answersCall: boolean): number {
  if (answersCall || error.code === 'tool_not_allowed') return TOOL_CALL_REFUSED;
  if (error.code === 'invalid_request' && error.param !== null && ROUTING_HEADERS.has(error.param))
    return HEADER_MISMATCH;
  return error.code === 'not_found' ? SESSION_NOT_FOUND : EXCHANGE_ERROR;
}

/**
 * Refusals on the MCP route as JSON-RPC errors: a tools/call's (its id set) as that request's answer, HTTP 200, so the
 * client's SDK reads it as the call's error; any other (auth, the body, the session) with its HTTP status and id null,
 * as the SDK's own transport answers those. `error.data` carries the gateway's `code`, `type`, `status` and, when
 * retrying later helps, `retryAfter` (seconds).
 */
const renderJsonRpcError: ErrorRenderer = function renderJsonRpcError(error, req, res) {
  noteRefusal(req, res, error);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  setErrorHeaders(error, res);
  const callId = (req as Request).tollgate.get('mcp.callId');
  const retryAfter = Number(error.headers['Retry-After'] ?? error.headers['retry-after']);
  const code = jsonRpcCodeOf(error, callId !== undefined);
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
export function speakJsonRpc(req: Request, res: Response, next: NextFunction): void {
  getContext(req, res).renderError = renderJsonRpcError;
  next();
}
