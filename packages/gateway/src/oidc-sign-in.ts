// Operator sign-in with OpenID Connect: authorization code with PKCE, state and nonce, the issuer found by discovery.
import express from 'express';
import type { Request, Response, Router } from 'express';
import type * as OpenIdClient from 'openid-client';
import { parseCookie } from 'cookie';
import { ApiError } from '@tollgate/core';
import type { AuditRole } from '@tollgate/core/audit';
import { asyncRoute } from '@tollgate/core/checks';
import type { OperatorSession, OperatorSessions } from './operator-sessions.js';

/** The `operators.oidc` section, its secret read from the environment. */
export interface OidcSignInOptions {
  issuer: string;
  clientId: string;
  clientSecret?: string;
  redirectUrl?: string;
  scopes: readonly string[];
  rolesClaim: string;
  roleMap?: Readonly<Record<string, AuditRole>>;
  tenantClaim?: string;
}

/** The cookie of a signed-in operator: every path of the gateway (both /admin and /dashboard read it). */
export const OPERATOR_COOKIE = 'tg_operator_session';
/** openid-client (and the jose it reads tokens with), loaded at the first sign-in: a gateway without OIDC never does. */
let openIdClient: Promise<typeof OpenIdClient> | undefined;
const oidcClient = () => (openIdClient ??= import('openid-client'));

/** The cookie of a sign-in under way, sent back only to the callback. */
const SIGN_IN_COOKIE = 'tg_operator_sign_in';
const SIGN_IN_TTL_MS = 600_000;
const RANK: Record<AuditRole, number> = { viewer: 1, operator: 2, admin: 3 };
const ROLE_NAMES = new Set<string>(['viewer', 'operator', 'admin']);

export function cookieOf(req: Request, name: string): string | undefined {
  const header = req.headers.cookie;
  return typeof header === 'string' ? parseCookie(header)[name] : undefined;
}

/** A path of this site to go to after signing in; anything else (another site, `//host`) is dropped. */
function localPath(value: unknown): string | undefined {
  if (typeof value !== 'string' || value.length > 2000) return undefined;
  return /^\/(?![/\\])[^\s\\]*$/.test(value) ? value : undefined;
}

/** A claim by its dotted path (`realm_access.roles`), as a list of strings. */
function claimValues(claims: Record<string, unknown>, path: string): string[] {
  let value: unknown = claims;
  for (const part of path.split('.')) {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return [];
    value = (value as Record<string, unknown>)[part];
  }
  if (typeof value === 'string') return [value];
  return Array.isArray(value) ? value.filter((item): item is string => typeof item === 'string') : [];
}

/** The highest role the claim's values map to; undefined when none maps (the sign-in is refused). */
function roleOfClaims(claims: Record<string, unknown>, options: OidcSignInOptions): AuditRole | undefined {
  let best: AuditRole | undefined;
  for (const value of claimValues(claims, options.rolesClaim)) {
    const role = options.roleMap ? options.roleMap[value] : ROLE_NAMES.has(value) ? (value as AuditRole) : undefined;
    if (role !== undefined && (best === undefined || RANK[role] > RANK[best])) best = role;
  }
  return best;
}

function cookieOptions(req: Request, path: string, maxAge: number) {
  return { httpOnly: true, sameSite: 'lax' as const, secure: req.secure, path, maxAge };
}

/** The gateway's root as mounted: the path of /admin's router without `/admin`. */
function rootOf(req: Request): string {
  return req.baseUrl.replace(/\/admin$/i, '');
}

/**
 * `GET /login?next=` (off to the issuer), `GET /callback` (back from it: the session cookie is set), `POST /logout`.
 * Mounted on the /admin router before its authentication.
 */
export function oidcSignInRoutes(options: OidcSignInOptions, sessions: OperatorSessions): Router {
  const router = express.Router();
  let discovered: Promise<OpenIdClient.Configuration> | undefined;
  const configuration = (): Promise<OpenIdClient.Configuration> => {
    // A failed discovery is tried again at the next sign-in, not kept.
    discovered ??= oidcClient()
      .then((oidc) =>
        oidc.discovery(
          new URL(options.issuer),
          options.clientId,
          options.clientSecret,
          options.clientSecret === undefined ? oidc.None() : undefined,
          new URL(options.issuer).protocol === 'http:' ? { execute: [oidc.allowInsecureRequests] } : undefined,
        ),
      )
      .catch((error: unknown) => {
        discovered = undefined;
        throw new ApiError('service_unavailable', `The OIDC issuer cannot be read: ${(error as Error).message}`, {
          cause: error,
          headers: { 'retry-after': '5' },
        });
      });
    return discovered;
  };
  const redirectUrl = (req: Request) =>
    options.redirectUrl ?? `${req.protocol}://${req.get('host')}${req.baseUrl}/callback`;

  router.get(
    '/login',
    asyncRoute(async function startSignIn(req: Request, res: Response) {
      const config = await configuration();
      const oidc = await oidcClient();
      const verifier = oidc.randomPKCECodeVerifier();
      const state = oidc.randomState();
      const nonce = oidc.randomNonce();
      const next = localPath(req.query.next) ?? `${rootOf(req)}/dashboard/`;
      const sealed = await sessions.seal({ state, nonce, verifier, next }, SIGN_IN_TTL_MS);
      res.cookie(SIGN_IN_COOKIE, sealed, cookieOptions(req, `${req.baseUrl}/callback`, SIGN_IN_TTL_MS));
      const url = oidc.buildAuthorizationUrl(config, {
        redirect_uri: redirectUrl(req),
        scope: options.scopes.join(' '),
        state,
        nonce,
        code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
        code_challenge_method: 'S256',
      });
      res.setHeader('cache-control', 'no-store');
      res.redirect(303, url.href);
    }),
  );

  router.get(
    '/callback',
    asyncRoute(async function finishSignIn(req: Request, res: Response) {
      res.clearCookie(SIGN_IN_COOKIE, { path: `${req.baseUrl}/callback` });
      const pending = await sessions.unseal(cookieOf(req, SIGN_IN_COOKIE));
      if (!pending || typeof pending.state !== 'string' || typeof pending.verifier !== 'string')
        throw new ApiError('invalid_request', 'The sign-in expired or was not started here: sign in again.', {
          status: 400,
        });
      const config = await configuration();
      const oidc = await oidcClient();
      const current = new URL(redirectUrl(req));
      current.search = new URL(req.originalUrl, 'http://local').search;
      let claims: Record<string, unknown>;
      try {
        const tokens = await oidc.authorizationCodeGrant(config, current, {
          pkceCodeVerifier: pending.verifier,
          expectedState: pending.state,
          expectedNonce: pending.nonce as string,
          idTokenExpected: true,
        });
        claims = (tokens.claims() ?? {}) as Record<string, unknown>;
      } catch (error) {
        // The cause names what failed (the `nonce` claim, the issuer): what an operator fixes at the issuer.
        const cause = (error as Error).cause;
        const what = cause instanceof Error ? `: ${cause.message}` : '';
        throw new ApiError('invalid_request', `The sign-in was refused: ${(error as Error).message}${what}`, {
          status: 400,
        });
      }
      const role = roleOfClaims(claims, options);
      if (role === undefined)
        throw new ApiError('insufficient_scope', `Signed in, but "${options.rolesClaim}" names no operator role.`, {
          status: 403,
        });
      const tenants = options.tenantClaim === undefined ? [] : claimValues(claims, options.tenantClaim);
      const { token } = await sessions.open({
        subject: String(claims.sub),
        issuer: String(claims.iss),
        role,
        ...(typeof claims.email === 'string' ? { email: claims.email } : {}),
        ...(tenants.length > 0 ? { tenants } : {}),
      });
      res.cookie(OPERATOR_COOKIE, token, cookieOptions(req, `${rootOf(req)}/`, sessions.ttlMs));
      res.setHeader('cache-control', 'no-store');
      res.redirect(303, typeof pending.next === 'string' ? pending.next : `${rootOf(req)}/dashboard/`);
    }),
  );

  router.post(
    '/logout',
    asyncRoute(async function signOut(req: Request, res: Response) {
      await signOutOperator(req, res, sessions);
      if (req.accepts(['html', 'json']) === 'json') res.status(204).end();
      else res.redirect(303, `${rootOf(req)}/dashboard/login`);
    }),
  );
  return router;
}

/** Ends the request's operator session (revoked, its cookie cleared); nothing when it has none. */
export async function signOutOperator(req: Request, res: Response, sessions: OperatorSessions): Promise<void> {
  const session: OperatorSession | undefined = await sessions.read(cookieOf(req, OPERATOR_COOKIE));
  if (session) await sessions.close(session);
  res.clearCookie(OPERATOR_COOKIE, { path: `${req.baseUrl.replace(/\/(admin|dashboard)$/i, '')}/` });
}
