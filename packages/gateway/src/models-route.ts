// GET /v1/models: the models the caller may use, in a shape both the OpenAI and the Anthropic SDKs read.
import type { Request, Response } from 'express';
import { isModelAllowed } from '@tollgate/core/kit';
import type { Identity, Pricing } from '@tollgate/core';
import type { ProxyConfig } from './config/index.js';
import { tierModelsOf } from './limits-setup.js';
import { providerOfModel } from './provider-routing.js';

export function listModels(config: ProxyConfig, pricing: Pricing) {
  const known = new Set([...pricing.models(), ...Object.keys(config.models ?? {})]);
  const upstreams = config.upstreams;
  // With real upstreams, only models some upstream serves; the mock serves every priced model.
  const served = [...known].filter(
    (model) => !upstreams || Object.hasOwn(upstreams, providerOfModel(model, 'openai.chat', config, pricing)),
  );
  return served.sort();
}

export function modelsRoute(config: ProxyConfig, pricing: Pricing) {
  const models = listModels(config, pricing);
  // The rule tierPolicy refuses by: a tier this lists nothing for is refused every model.
  const tierModels = tierModelsOf(config);
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
      owned_by: providerOfModel(id, 'openai.chat', config, pricing),
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
