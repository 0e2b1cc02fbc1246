// Token counts without charge (any adapter's `countTokens`, at its own path or as a method of its API's):
// forwarded to the upstream serving the model, else answered from the count the meter's estimate makes.
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { modelAllowlist } from '@tollgate/auth';
import { ApiError, renderApiError } from '@tollgate/core';
import type { Pricing, ProviderApi } from '@tollgate/core';
import { adapterFor, estimateRequestAsync } from '@tollgate/providers';
import { checkModelKind, providerAdapters } from '@tollgate/providers/routes';
import type { TierPolicyOptions } from '@tollgate/ratelimit';
import type { ProviderRouter } from '@tollgate/router/upstreams';
import { countRouteStages, routePaths } from './route-methods.js';
import type { RouteStages } from './route-methods.js';
import type { GatewayRoute } from './stages.js';

interface CountRoute extends RouteStages {
  path: string;
  /** Every path it answers: its own, or its API route's with that route's aliases. */
  paths: readonly string[];
  api: ProviderApi;
}

/** Every API whose adapter counts tokens, at its count path (or its own route's, for the method it names there). */
export const COUNT_ROUTES: readonly CountRoute[] = providerAdapters().flatMap((adapter) => {
  const own = adapter.countTokens?.path;
  const at =
    own !== undefined ? { path: own, paths: [own] } : adapter.countTokens && adapter.route && routePaths(adapter.route);
  return at ? [{ ...at, api: adapter.api, ...countRouteStages(adapter) }] : [];
});

/** The model a count asks about (in its body, or in its path). */
function countedModel(route: Pick<CountRoute, 'api' | 'params'>, req: Request): string | undefined {
  return adapterFor(route.api).read({
    body: req.body,
    params: route.params ? route.params(req) : (req.params as Record<string, string>),
  }).model;
}

/**
 * The caller may count tokens only for a model it may call: the tier's list, then the key's own (auth's
 * modelAllowlist, on the rule tierPolicy applies to calls, core `resolveTierModels`).
 */
export function countModelAllowlist(
  policy: Pick<TierPolicyOptions, 'tiers' | 'defaultTier'>,
  route: GatewayRoute,
): RequestHandler {
  const { api, params } = route;
  if (api === undefined) throw new Error('tollgate: a token count names the API it counts for');
  return tierModelAllowlist(policy, (req) => countedModel({ api, params }, req));
}

/** The tier policy's model rule (a tier without `models` may call any) for a model `readModel` finds in a request. */
export function tierModelAllowlist(
  policy: Pick<TierPolicyOptions, 'tiers' | 'defaultTier'>,
  readModel: (req: Request) => string | undefined,
): RequestHandler {
  const read = (req: unknown) => readModel(req as Request);
  if (!policy.tiers) return modelAllowlist({ readModel: read });
  const tiers = Object.fromEntries(Object.entries(policy.tiers).map(([name, tier]) => [name, tier.models ?? ['*']]));
  const defaultTier = policy.defaultTier;
  const otherTiers = defaultTier !== undefined && Object.hasOwn(tiers, defaultTier) ? tiers[defaultTier] : [];
  return modelAllowlist({ tiers, otherTiers, readModel: read });
}

/**
 * The count itself. The model must be one the gateway prices, of the kind the API serves. Sent to the upstream of
 * the model's provider when one of the API's kind is configured, its answer passed back; else counted here with the
 * adapter's `countInput` through the meter's own estimate (tokenizer, approximation, time box), so the figure is the
 * input the meter would reserve for the same request.
 */
export function answerTokenCount(route: CountRoute, pricing: Pricing, providers: ProviderRouter): RequestHandler {
  const adapter = adapterFor(route.api);
  const counting = adapter.countTokens!;
  return function countTokens(req: Request, res: Response, next: NextFunction): void {
    const model = countedModel(route, req);
    const refuse = (error: unknown) => (error instanceof ApiError ? renderApiError(error, req, res) : next(error));
    if (!model) {
      refuse(new ApiError('invalid_request', 'The request names no model.', { param: 'model' }));
      return;
    }
    const price = pricing.find(model);
    if (!price) {
      const message = `The model "${model.slice(0, 100)}" is not available: it has no price in this gateway's pricing table.`;
      refuse(new ApiError('invalid_request', message, { param: 'model' }));
      return;
    }
    try {
      checkModelKind(adapter, model, price);
    } catch (error) {
      refuse(error);
      return;
    }
    if (providers.forwardCount(route.api, model, req, res, next)) return;
    const body = req.body as Record<string, unknown>;
    estimateRequestAsync({ api: adapter, body: counting.request?.(body) ?? body, model, pricing })
      .then((estimate) => {
        if (!res.headersSent) res.json(counting.answer(estimate.inputTokens));
      }, refuse)
      .catch(next);
  };
}
