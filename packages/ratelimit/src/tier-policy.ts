// tierPolicy: per-tier model allowlist and output cap (clamps max_tokens & co., sets it when absent).
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import {
  ApiError,
  getContext,
  renderApiError,
  TollgateError,
  type ErrorRenderer,
  type ProviderApi,
} from '@tollgate/core';
import { assertKnownOptions, closestName, didYouMean } from '@tollgate/core/options';
import { isModelAllowed, resolveTierModels } from '@tollgate/core/checks';
import { adapterFor } from '@tollgate/providers';
import { declareOrAnswer } from '@tollgate/providers';
import type { CallDeclaration, ProviderAdapter } from '@tollgate/providers';

export interface TierRules {
  /** Models this tier may call (`*` any, `prefix*`, exact; dated ids match their family). Absent = any. */
  models?: string[];
  /** The largest output cap a request of this tier may ask for; also set when the request names none. */
  maxOutputTokens?: number;
}

export interface TierPolicyOptions {
  /**
   * The provider API the route speaks, when no earlier piece declared its call (`providerCall()`,
   * `meter({ api })`). A request with no declared API is refused (500 `misconfigured_route`):
   * tier rules that cannot read the model would let anything through.
   * @default the call declared earlier on the route
   */
  api?: ProviderApi | ProviderAdapter;
  /** Builds the provider request, for routes that call an SDK themselves (see `providerCall`). @default the JSON body */
  request?: CallDeclaration['request'];
  /**
   * Rules by tier name (the caller's `identity.tier`). Extra fields of a config tier are ignored.
   * Once given, a caller whose tier has no entry (or who has none) gets `defaultTier`'s rules, else
   * every model is refused: an unknown tier fails closed (core `resolveTierModels`, as modelAllowlist).
   * @default no tier rules
   */
  tiers?: Record<string, TierRules>;
  /**
   * The tier whose rules apply to callers without a tier, or with a tier missing from `tiers`; it must
   * be a key of `tiers`.
   * @default none: such callers are refused every model
   */
  defaultTier?: string;
  /**
   * Also enforce the identity's own `models` list (from its key or token) when it has one.
   * @default true
   */
  identityModels?: boolean;
  /**
   * Renders the 403 `model_not_allowed`.
   * @default renderApiError from @tollgate/core
   */
  renderError?: ErrorRenderer;
}

const OPTION_NAMES = ['api', 'request', 'tiers', 'defaultTier', 'identityModels', 'renderError'] as const;
const RULE_NAMES = ['models', 'maxOutputTokens'] as const;
const CODE = 'ERR_TG_RATELIMIT';
const FACTORY = 'tierPolicy';

/** Config tiers carry limits too (`requestsPerMinute` ...): keep only the fields this policy reads. */
function resolveRules(tier: string, raw: unknown): TierRules {
  if (typeof raw !== 'object' || raw === null)
    throw new TollgateError(`${CODE}_INVALID_TIER`, `${FACTORY}() tiers.${tier} must be an object`);
  const { models, maxOutputTokens } = raw as TierRules;
  if (models !== undefined && (!Array.isArray(models) || models.some((m) => typeof m !== 'string' || m.length === 0))) {
    throw new TollgateError(
      `${CODE}_INVALID_TIER`,
      `${FACTORY}() tiers.${tier}.models must be an array of model names or patterns`,
    );
  }
  if (maxOutputTokens !== undefined && !(Number.isSafeInteger(maxOutputTokens) && maxOutputTokens > 0)) {
    throw new TollgateError(
      `${CODE}_INVALID_TIER`,
      `${FACTORY}() tiers.${tier}.maxOutputTokens must be a positive integer; got ${JSON.stringify(maxOutputTokens)}`,
    );
  }
  for (const key of Object.keys(raw)) {
    const hint = closestName(key, RULE_NAMES);
    // A near miss of a rule name is a typo that would silently disable the rule.
    if (!(RULE_NAMES as readonly string[]).includes(key) && hint) {
      throw new TollgateError(
        `${CODE}_INVALID_TIER`,
        `${FACTORY}() tiers.${tier} has "${key}"; did you mean "${hint}"?`,
      );
    }
  }
  return { ...(models ? { models: [...models] } : {}), ...(maxOutputTokens ? { maxOutputTokens } : {}) };
}

/**
 * Applies the caller's tier rules to a provider call: a model outside the tier's list is
 * refused with 403 `model_not_allowed`; the output cap is clamped to `maxOutputTokens`, and
 * set when absent, in every cap field of the API, so the provider enforces it (an estimate made
 * before is recomputed). Mount after `express.json()` and auth, on routes that declare their API.
 */
export function tierPolicy(options: TierPolicyOptions = {}): RequestHandler {
  assertKnownOptions(options, OPTION_NAMES, `${CODE}_UNKNOWN_OPTION`, FACTORY);
  const rules = new Map<string, TierRules>();
  for (const [tier, raw] of Object.entries(options.tiers ?? {})) rules.set(tier, resolveRules(tier, raw));
  const defaultTier = options.defaultTier;
  if (defaultTier !== undefined && !rules.has(defaultTier)) {
    // Naming a default that is not there would refuse every caller it was meant to admit.
    const message = `${FACTORY}() defaultTier "${defaultTier}" is not a key of tiers${didYouMean(defaultTier, [...rules.keys()])}`;
    throw new TollgateError(`${CODE}_INVALID_TIER`, message);
  }
  const defaultRules = defaultTier === undefined ? undefined : rules.get(defaultTier);
  const tierModels = options.tiers && Object.fromEntries([...rules].map(([tier, { models }]) => [tier, models]));
  const modelsOf = resolveTierModels(tierModels, { defaultTier });
  const identityModels = options.identityModels ?? true;
  const renderError = options.renderError ?? renderApiError;
  const declared = options.api === undefined ? undefined : adapterFor(options.api, `${FACTORY}() option api`);
  const declaration: CallDeclaration = { request: options.request };

  function refuseModel(req: Request, res: Response, model: string, where: string): void {
    renderError(
      new ApiError('model_not_allowed', `The model \`${model}\` is not available ${where}.`, { param: 'model' }),
      req,
      res,
    );
  }

  return function tierPolicyMiddleware(req: Request, res: Response, next: NextFunction): void {
    const context = getContext(req, res);
    const call = declareOrAnswer(req, res, next, declared, declaration, renderError);
    if (call === false) return;
    if (!call) {
      const message =
        'This route applies tier rules but declares no provider call: declare its API (providerCall(), tierPolicy({ api })).';
      renderError(new ApiError('misconfigured_route', message), req, res);
      return;
    }
    const identity = context.identity;
    const tier = identity?.tier;
    const ownTier = tier !== undefined && rules.has(tier) ? tier : undefined;
    const tierRules = ownTier !== undefined ? rules.get(ownTier) : defaultRules;
    const allowed = modelsOf(tier);
    const model = call.model!;
    if (allowed && !isModelAllowed(model, allowed)) {
      const answeredBy = ownTier ?? defaultTier;
      if (answeredBy !== undefined) refuseModel(req, res, model, `on the ${answeredBy} tier`);
      else refuseModel(req, res, model, tier === undefined ? 'to a caller without a tier' : 'to an unknown tier');
      return;
    }
    if (identityModels && identity?.models && !isModelAllowed(model, identity.models)) {
      refuseModel(req, res, model, 'to this key');
      return;
    }
    // One rule for every API: the cap goes into each field the API reads, and the estimate follows.
    const maxOutput = tierRules?.maxOutputTokens;
    if (maxOutput !== undefined) context.limitOutput(maxOutput);
    next();
  };
}
