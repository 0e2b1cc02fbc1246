// requireScope: lets a request through only when its identity holds every named scope (403 insufficient_scope).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ErrorRenderer } from '@tollgate/core';
import { ApiError, getContext, renderApiError, TollgateError } from '@tollgate/core';
import { assertKnownOptions } from '@tollgate/core/options';
import { isValidRealm, readCredential, refuseCredential } from './credentials.js';
import { isAuthenticated } from './key-source.js';

interface RequireScopeOptions {
  /**
   * Renders denials (401 when nobody is identified, 403 when a scope is missing).
   * @default core renderApiError
   */
  renderError?: ErrorRenderer;
  /**
   * The realm in `WWW-Authenticate` of the 401.
   * @default 'tollgate'
   */
  realm?: string;
}

const KNOWN_OPTIONS = ['renderError', 'realm'] as const;
const SCOPE = /^[\x21\x23-\x5b\x5d-\x7e]+$/;

/**
 * Express middleware: 403 `insufficient_scope` unless `req.tollgate.identity.scopes` holds
 * every scope named; 401 when no auth middleware identified the caller. A last argument
 * that is an object is taken as options: `requireScope('chat', { renderError })`.
 */
export function requireScope(...args: [string, ...(string | RequireScopeOptions)[]]) {
  const last = args[args.length - 1];
  const options: RequireScopeOptions =
    typeof last === 'object' && last !== null ? (args.pop() as RequireScopeOptions) : {};
  assertKnownOptions(options, KNOWN_OPTIONS, 'ERR_TG_AUTH_UNKNOWN_OPTION', 'requireScope');
  const required = args as string[];
  if (required.length === 0)
    throw new TollgateError('ERR_TG_AUTH_INVALID_OPTION', 'requireScope() needs at least one scope');
  for (const scope of required) {
    // RFC 6750 scope-token characters: the scope is also quoted in WWW-Authenticate.
    if (typeof scope !== 'string' || !SCOPE.test(scope))
      throw new TollgateError(
        'ERR_TG_AUTH_INVALID_OPTION',
        `requireScope(): ${JSON.stringify(scope)} is not a valid scope`,
      );
  }
  const realm = options.realm ?? 'tollgate';
  if (!isValidRealm(realm))
    throw new TollgateError(
      'ERR_TG_AUTH_INVALID_OPTION',
      'requireScope(): realm must be printable ASCII without quotes or backslashes',
    );
  const renderError = options.renderError ?? renderApiError;
  const scopeList = required.join(' ');
  const challenge = `Bearer realm="${realm}", error="insufficient_scope", scope="${scopeList}"`;

  return function tollgateRequireScope(req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void): void {
    const identity = getContext(req, res).identity;
    // Anonymous callers were let through by optional auth middleware: the 401 names what those accept.
    if (!isAuthenticated(identity)) return renderError(refuseCredential(req, realm, readCredential(req), 0), req, res);
    const missing = required.filter((scope) => !identity.scopes.includes(scope));
    if (missing.length === 0) return next();
    renderError(
      new ApiError(
        'insufficient_scope',
        `This credential lacks the scope${missing.length > 1 ? 's' : ''} ${missing.map((s) => `"${s}"`).join(', ')} needed here.`,
        {
          headers: { 'WWW-Authenticate': challenge },
        },
      ),
      req,
      res,
    );
  };
}
