// GET /v1/models: the models the caller may use, in a shape both the OpenAI and the Anthropic SDKs read.
import type { Request, Response } from 'express';
import { isModelAllowed } from '@tollgate/core/checks';
import type { Identity, Pricing } from '@tollgate/core';
import type { TierPolicyOptions } from '@tollgate/ratelimit';
import { tierModelsOf } from './limits-setup.js';

/** What the model list is made of. */
export interface ModelListOptions {
  /** The models the gateway adds to (or overrides in) the catalogue. */
  configured: readonly string[];
  /** The upstreams' names; none: the mock serves every priced model. */
  upstreams?: readonly string[] | undefined;
  /** The provider serving a model (its configured one, else its catalogue row's, else the Chat API's). */
  providerOf(model: string): string;
  /** The tiers' model allowlists (tierPolicy's). */
  tierPolicy: TierPolicyOptions;
}

function listModels(options: ModelListOptions, pricing: Pricing) {
  const known = new Set([...pricing.models(), ...options.configured]);
  const upstreams = options.upstreams;
  // With real upstreams, only models some upstream serves; the mock serves every priced model.
  const served = [...known].filter((model) => !upstreams || upstreams.includes(options.providerOf(model)));
  return served.sort();
}

export function modelsRoute(options: ModelListOptions, pricing: Pricing) {
  const models = listModels(options, pricing);
  // The rule tierPolicy refuses by: a tier this lists nothing for is refused every model.
  const tierModels = tierModelsOf(options.tierPolicy);
  const created = Math.floor(Date.now() / 1000);
  const createdAt = new Date(created * 1000).toISOString();
  return function listAllowedModels(req: Request, res: Response): void {
    const identity: Identity | undefined = req.tollgate?.identity;
    const byTier = tierModels(identity?.tier);
    const allowed = models.filter(
      (model) =>
        (byTier === undefined || isModelAllowed(model, byTier)) &&
        (identity?.models === undefined || isModelAllowed(model, identity.models)),
    );
    const data = allowed.map((id) => ({
      id,
      object: 'model',
      created,
      owned_by: options.providerOf(id),
      type: 'model',
      display_name: id,
      created_at: createdAt,
    }));
    res.json({
      object: 'list',
      data,
      has_more: false,
      first_id: data[0]?.id ?? null,
      last_id: data.at(-1)?.id ?? null,
    });
  };
}
