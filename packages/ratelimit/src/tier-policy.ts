// tierPolicy: per-tier model allowlist and output cap (clamps max_tokens & co., sets it when absent).
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import {
  ApiError, assertKnownOptions, closestName, detectProviderApi, getContext, isModelAllowed, renderApiError, requestModel, requestOutputCap,
  setRequestOutputCap, TollgateError, type ErrorRenderer, type ProviderApi,
} from '@tollgate/core';

export interface TierRules {
  /** Models this tier may call (`*` any, `prefix*`, exact; dated ids match their family). Absent = any. */
  models?: string[];
  /** The largest output cap a request of this tier may ask for; also set when the request names none. */
  maxOutputTokens?: number;
}

export interface TierPolicyOptions {
  /** Rules by tier name (the caller's `identity.tier`). Extra fields of a config tier are ignored. */
  tiers?: Record<string, TierRules>;
  /**
   * The tier whose rules apply to callers without a tier, or with a tier missing from `tiers`.
   * @default 'free'
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

const OPTION_NAMES = ['tiers', 'defaultTier', 'identityModels', 'renderError'] as const;
const RULE_NAMES = ['models', 'maxOutputTokens'] as const;
const CODE = 'ERR_TG_RATELIMIT';
const FACTORY = 'tierPolicy';

/** Config tiers carry limits too (`requestsPerMinute` ...): keep only the fields this policy reads. */
function resolveRules(tier: string, raw: unknown): TierRules {
  if (typeof raw !== 'object' || raw === null) throw new TollgateError(`${CODE}_INVALID_TIER`, `${FACTORY}() tiers.${tier} must be an object`);
  const { models, maxOutputTokens } = raw as TierRules;
  if (models !== undefined && (!Array.isArray(models) || models.some((m) => typeof m !== 'string' || m.length === 0))) {
    throw new TollgateError(`${CODE}_INVALID_TIER`, `${FACTORY}() tiers.${tier}.models must be an array of model names or patterns`);
  }
  if (maxOutputTokens !== undefined && !(Number.isSafeInteger(maxOutputTokens) && maxOutputTokens > 0)) {
    throw new TollgateError(`${CODE}_INVALID_TIER`, `${FACTORY}() tiers.${tier}.maxOutputTokens must be a positive integer; got ${JSON.stringify(maxOutputTokens)}`);
  }
  for (const key of Object.keys(raw)) {
    const hint = closestName(key, RULE_NAMES);
    // A near miss of a rule name is a typo that would silently disable the rule.
    if (!(RULE_NAMES as readonly string[]).includes(key) && hint) {
      throw new TollgateError(`${CODE}_INVALID_TIER`, `${FACTORY}() tiers.${tier} has "${key}"; did you mean "${hint}"?`);
    }
  }
  return { ...(models ? { models: [...models] } : {}), ...(maxOutputTokens ? { maxOutputTokens } : {}) };
}

/** The output caps a chat body names, in either field. */
function chatCaps(body: Record<string, unknown>): number[] {
  return [body.max_completion_tokens, body.max_tokens].filter((value): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value > 0);
}

/**
 * Applies the caller's tier rules to a provider request: a model outside the tier's list is
 * refused with 403 `model_not_allowed`; the output cap is clamped to `maxOutputTokens`, and
 * set when absent, so the provider enforces it. Mount after `express.json()` and before the
 * metering estimate, so the estimate reserves the clamped cap.
 */
export function tierPolicy(options: TierPolicyOptions = {}): RequestHandler {
  assertKnownOptions(options, OPTION_NAMES, `${CODE}_UNKNOWN_OPTION`, FACTORY);
  const rules = new Map<string, TierRules>();
  for (const [tier, raw] of Object.entries(options.tiers ?? {})) rules.set(tier, resolveRules(tier, raw));
  const defaultRules = rules.get(options.defaultTier ?? 'free');
  const identityModels = options.identityModels ?? true;
  const renderError = options.renderError ?? renderApiError;
  let warnedNoBody = false;

  function refuseModel(req: Request, res: Response, model: string, where: string): void {
    renderError(new ApiError('model_not_allowed', `The model \`${model}\` is not available ${where}.`, { param: 'model' }), req, res);
  }

  return function tierPolicyMiddleware(req: Request, res: Response, next: NextFunction): void {
    const api: ProviderApi | undefined = detectProviderApi(req.originalUrl ?? req.url);
    if (!api) {
      next();
      return;
    }
    const body: unknown = req.body;
    if (typeof body !== 'object' || body === null) {
      if (!warnedNoBody && req.method === 'POST') {
        warnedNoBody = true;
        process.emitWarning(`tollgate ${FACTORY}: a ${api} request reached it without a parsed JSON body; mount express.json() before it`);
      }
      next();
      return;
    }
    const context = getContext(req, res);
    const identity = context.identity;
    const tier = identity?.tier;
    const tierRules = (tier !== undefined ? rules.get(tier) : undefined) ?? defaultRules;
    const model = requestModel(body);
    if (model !== undefined) {
      if (tierRules?.models && !isModelAllowed(model, tierRules.models)) {
        refuseModel(req, res, model, `on the ${tier !== undefined && rules.has(tier) ? tier : (options.defaultTier ?? 'free')} tier`);
        return;
      }
      if (identityModels && identity?.models && !isModelAllowed(model, identity.models)) {
        refuseModel(req, res, model, 'to this key');
        return;
      }
    }
    const maxOutput = tierRules?.maxOutputTokens;
    if (maxOutput !== undefined) {
      const asked = requestOutputCap(body, api);
      // Chat takes two cap fields and servers differ on which wins: a small one must not carry a
      // large one past the clamp, so both get the smallest cap asked (within the tier's).
      const caps = api === 'openai.chat' ? chatCaps(body as Record<string, unknown>) : asked === undefined ? [] : [asked];
      const cap = Math.min(maxOutput, ...caps);
      if (caps.length === 0 || caps.some((value) => value !== cap)) setRequestOutputCap(body, api, cap);
      // An estimate made before the clamp would reserve more than the provider may now produce.
      const estimate = context.estimate;
      if (estimate && estimate.maxOutputTokens > cap) {
        estimate.maxOutputTokens = cap;
        estimate.totalTokens = estimate.inputTokens + cap;
      }
    }
    next();
  };
}
