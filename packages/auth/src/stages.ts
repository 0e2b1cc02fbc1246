// @tollgate/auth/stages: auth's stages of the chain: who is calling, the scope required, whom the call is for.
import type { RequestHandler } from 'express';
import type { StageContribution, StageRoute } from '@tollgate/core/stages';
import { apiKeyAuth } from './api-key-auth.js';
import type { ApiKeyAuthOptions } from './api-key-auth.js';
import { attribution } from './attribution.js';
import type { AttributionOptions } from './attribution.js';
import { requireScope } from './require-scope.js';

/** What auth's stages are made of. */
export interface AuthStageParts {
  /** apiKeyAuth's options. */
  keys: ApiKeyAuthOptions;
  /** What rides with the identity once it is known (shadow mode). @default none */
  withIdentity?: readonly RequestHandler[] | undefined;
  /** requireScope's scope, for every caller. @default none */
  scope?: string | undefined;
  /** Whom each call is for. @default from the key only */
  attribution?: AttributionOptions | undefined;
}

/** Auth's stages (`auth`, `permissions`, `attribution`), each made once and the same on every route kind. */
export function authStages(parts: AuthStageParts): StageContribution<RequestHandler, StageRoute> {
  const auth = [apiKeyAuth(parts.keys), ...(parts.withIdentity ?? [])];
  const permissions = parts.scope ? [requireScope(parts.scope)] : [];
  const attributed = [attribution(parts.attribution ?? {})];
  return { auth: () => auth, permissions: () => permissions, attribution: () => attributed };
}
