// bearerAuth: the API-key check as a passport strategy (passport-http-bearer), for apps that already use passport.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Request } from 'express';
import type passportModule from 'passport';
import type bearerModule from 'passport-http-bearer';
import type { ErrorRenderer, Identity } from '@tollgate/core';
import { getContext } from '@tollgate/core';
import { assertKnownOptions, loadOnDemand } from '@tollgate/core/options';
import type { KeyAuthOptions } from './api-key-auth.js';
import { resolveKeyAuthOptions } from './api-key-auth.js';
import {
  acceptedOn,
  contextOfRequest,
  authUnavailable,
  credentialMessages,
  invalidCredentials,
  KEY_IN_BEARER,
  readBearer,
  refuseCredential,
} from './credentials.js';
import { checkApiKey, identityFromRecord, isAuthenticated, KEY_REJECTION_MESSAGES } from './key-source.js';

/** The name the strategy registers under: `passport.authenticate('tollgate-bearer', { session: false })`. */
export const BEARER_STRATEGY_NAME = 'tollgate-bearer';

/** The API-key options of `apiKeyAuth` (keys, keyFormat, realm, timeoutMs, mapIdentity, onStoreError). */
type BearerStrategyOptions = KeyAuthOptions;

/**
 * A passport strategy as passport calls it. Written here rather than imported from @types/passport, so the published
 * types need no @types package at run time (issue 44: a lean install); passport's own `Strategy` type accepts it.
 */
interface Strategy {
  name?: string | undefined;
  authenticate(req: IncomingMessage, options?: unknown): unknown;
}

/** What bearerAuth needs of a passport instance (`passport` itself or `new passport.Passport()`). */
interface PassportLike {
  use(name: string, strategy: Strategy): unknown;
  authenticate(
    strategy: string,
    options: { session: boolean },
    callback: (error: unknown, user: Identity | false | undefined) => void,
  ): unknown;
}

interface BearerAuthOptions extends BearerStrategyOptions {
  /**
   * The passport instance to register the strategy on and authenticate with.
   * @default a private `new passport.Passport()`, so the app's global passport is left alone
   */
  passport?: PassportLike;
  /**
   * Renders denials (401, 503) as JSON instead of passport's plain-text 401.
   * @default core renderApiError
   */
  renderError?: ErrorRenderer;
}

const STRATEGY_OPTIONS = ['keys', 'keyFormat', 'realm', 'timeoutMs', 'mapIdentity', 'onStoreError'] as const;
const KNOWN_OPTIONS = [...STRATEGY_OPTIONS, 'passport', 'renderError'] as const;

/** Marks a key-store failure on its way through passport, so bearerAuth can answer 503 rather than 500. */
class KeyStoreUnavailableError extends Error {
  override readonly name = 'KeyStoreUnavailableError';
  constructor(cause: unknown) {
    super('the key store did not answer', { cause });
  }
}

type VerifyDone = (error: unknown, user?: Identity | false, info?: { message: string }) => void;

function buildStrategy(resolved: ReturnType<typeof resolveKeyAuthOptions>): Strategy {
  const { lookup, realm, timeoutMs, keyFormat, mapIdentity, onStoreError } = resolved;

  const reject = (req: IncomingMessage, done: VerifyDone, message: string) => {
    contextOfRequest(req)?.set('auth.rejection', message);
    done(null, false, { message });
  };

  const verify = (req: Request, token: string, done: VerifyDone): void => {
    // passport-http-bearer also takes `access_token` from the body or the query string; a
    // secret in a URL ends up in access logs, so only the Authorization header counts.
    const header = readBearer(req);
    // Only the Authorization header is read, so the advice names no x-api-key.
    const messages = credentialMessages(acceptedOn(req, KEY_IN_BEARER));
    if (header.kind !== 'token' || header.token !== token) return reject(req, done, messages.malformed);
    if (keyFormat !== null && !keyFormat.test(token)) return reject(req, done, messages.unknown);
    checkApiKey(token, lookup, { timeoutMs, now: Date.now() }).then(
      (check) => {
        if (!check.ok) {
          return reject(
            req,
            done,
            check.reason === 'unknown' ? messages.unknown : KEY_REJECTION_MESSAGES[check.reason],
          );
        }
        let identity = identityFromRecord(check.record, 'bearer');
        try {
          if (mapIdentity) identity = mapIdentity(identity, check.record);
        } catch (error) {
          return done(error);
        }
        done(null, identity);
      },
      (error: unknown) => {
        onStoreError(error);
        done(new KeyStoreUnavailableError(error));
      },
    );
  };

  // passport and its bearer strategy load with the first strategy built: an app without bearerAuth never loads them.
  const { Strategy: BearerStrategy } = loadOnDemand<typeof bearerModule>(import.meta.url, 'passport-http-bearer');
  const strategy = new BearerStrategy({ realm, passReqToCallback: true }, verify) as unknown as Strategy;
  strategy.name = BEARER_STRATEGY_NAME;
  return strategy;
}

/**
 * A passport strategy named `tollgate-bearer` that checks `Authorization: Bearer <key>`
 * against a key store; `user` is the core Identity (`authMethod: 'bearer'`).
 * Use with `passport.authenticate('tollgate-bearer', { session: false })`.
 */
export function createBearerStrategy(options: BearerStrategyOptions = {}): Strategy {
  assertKnownOptions(options, STRATEGY_OPTIONS, 'ERR_TG_AUTH_UNKNOWN_OPTION', 'createBearerStrategy');
  return buildStrategy(resolveKeyAuthOptions(options, 'createBearerStrategy'));
}

/**
 * Express middleware: `passport.authenticate('tollgate-bearer', { session: false })` with
 * the result in `req.tollgate.identity` (and `req.user`), and failures as tollgate's 401 JSON.
 */
export function bearerAuth(options: BearerAuthOptions = {}) {
  assertKnownOptions(options, KNOWN_OPTIONS, 'ERR_TG_AUTH_UNKNOWN_OPTION', 'bearerAuth');
  const { passport: instance, renderError: renderOption, ...strategyOptions } = options;
  const resolved = resolveKeyAuthOptions({ ...strategyOptions, renderError: renderOption }, 'bearerAuth');
  const { realm, renderError } = resolved;
  const strategy = buildStrategy(resolved);
  const authenticator: PassportLike =
    instance ?? new (loadOnDemand<typeof passportModule>(import.meta.url, 'passport').Passport)();
  authenticator.use(BEARER_STRATEGY_NAME, strategy);

  return function tollgateBearerAuth(req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void): void {
    const context = getContext(req, res);
    if (isAuthenticated(context.identity)) return next();
    const answer = (error: unknown, user: Identity | false | undefined) => {
      if (error instanceof KeyStoreUnavailableError) return renderError(authUnavailable(error.cause), req, res);
      if (error) return next(error);
      if (!user) {
        const reason = context.get('auth.rejection');
        // No reason: passport refused before verify (no bearer token, or another scheme).
        const denial =
          reason === undefined
            ? refuseCredential(req, realm, readBearer(req), KEY_IN_BEARER)
            : invalidCredentials(realm, true, reason);
        return renderError(denial, req, res);
      }
      context.identity = user;
      (req as IncomingMessage & { user?: unknown }).user = user;
      next();
    };
    // passport calls back from inside the key lookup's promise: a renderError that throws there
    // would be an unhandled rejection and a request left hanging.
    const onResult = (error: unknown, user: Identity | false | undefined) => {
      try {
        answer(error, user);
      } catch (thrown) {
        next(thrown);
      }
    };
    const authenticate = authenticator.authenticate(BEARER_STRATEGY_NAME, { session: false }, onResult) as (
      req: IncomingMessage,
      res: ServerResponse,
      next: (err?: unknown) => void,
    ) => void;
    authenticate(req, res, next);
  };
}
