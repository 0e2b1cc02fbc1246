// @tollgate/guard/stages: the guard's stages of the chain: its checks before auth, the body read after it (shedding,
// then a deadline), suspensions after the estimate, and the prompt guardrails.
import type { RequestHandler } from 'express';
import type { StageContribution, StageRoute } from '@tollgate/core/stages';
import { bodyAfterAuth } from './body-after-auth.js';
import type { PromptGuardrailsOptions } from './guardrail-options.js';
import { promptGuardrails } from './prompt-guardrails.js';

type BodyParser = Parameters<typeof bodyAfterAuth>[0];

/** The guard's checks at its stages, as a deployment made them (all empty without a guard). */
export interface GuardStageParts<Route extends StageRoute = StageRoute> {
  /** Address blocks and auth floods, before the caller is known. */
  guardAdmit: readonly RequestHandler[];
  /** Lower tiers shed first when the process is saturated, before a body is read. @default none */
  shedder?: RequestHandler | undefined;
  /** How long the body may take once the caller is known. @default no deadline (no guard) */
  bodyTimeout?: number | string | undefined;
  /** The route's body reader (JSON, a form, or none), which `bodyGuard` runs under the deadline. */
  readBody: (route: Route) => RequestHandler;
  /** Suspended keys and tenants, abuse actions, once the call is estimated. */
  guardAfterEstimate: readonly RequestHandler[];
  /** `guardrails`: promptGuardrails' options. @default none */
  guardrails?: PromptGuardrailsOptions | undefined;
}

/** The guard's stages on every route kind (a profile skips those it does not run). */
export function guardStages<Route extends StageRoute>(
  parts: GuardStageParts<Route>,
): StageContribution<RequestHandler, Route> {
  const { guardAdmit, shedder, bodyTimeout, guardAfterEstimate } = parts;
  const shedding = shedder ? [shedder] : [];
  const guardrails = parts.guardrails ? [promptGuardrails(parts.guardrails)] : [];
  return {
    guardAdmit: () => guardAdmit,
    bodyGuard: (route) => {
      const readBody = parts.readBody(route);
      const timed =
        bodyTimeout === undefined ? readBody : bodyAfterAuth(readBody as BodyParser, { timeout: bodyTimeout });
      return [...shedding, timed];
    },
    guardAfterEstimate: () => guardAfterEstimate,
    guardrails: () => guardrails,
  };
}
