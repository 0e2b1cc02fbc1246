// Sends each request to what serves its model: the in-process mock, or the configured upstream of the model's provider.
import type { NextFunction, Request, Response } from 'express';
import { ApiError, providerOf } from '@tollgate/core';
import type { Pricing, ProviderApi } from '@tollgate/core';
import type { ProxyConfig } from './config.js';
import type { MockProvider } from './mock-provider.js';
import { createUpstream } from './upstream.js';
import type { Upstream } from './upstream.js';

export interface ProviderRouter {
  /** The final handler of a provider route. */
  handler(api: ProviderApi): (req: Request, res: Response, next: NextFunction) => void;
  /** Names of the upstreams, or ["mock"]. */
  readonly names: string[];
  close(): Promise<void>;
}

/** The provider a model belongs to: the config's `models` entry, else the pricing table's, else the API's. */
export function providerOfModel(model: string, api: ProviderApi, config: ProxyConfig, pricing: Pricing | undefined): string {
  const configured = config.models && Object.hasOwn(config.models, model) ? config.models[model] : undefined;
  if (configured) return configured.provider;
  return pricing?.find(model)?.provider ?? providerOf(api);
}

export function createProviderRouter(config: ProxyConfig, options: { mock?: MockProvider; pricing?: Pricing; env?: NodeJS.ProcessEnv }): ProviderRouter {
  if (!config.upstreams) {
    const mock = options.mock;
    if (!mock) throw new Error('createProviderRouter: no upstreams configured and no mock provider given');
    return {
      names: ['mock'],
      handler: (api) => function callMockProvider(req: Request, res: Response) {
        mock.handlers[api](req, res);
      },
      close: async () => mock.close(),
    };
  }

  const upstreams = new Map<string, Upstream>();
  for (const [name, upstreamConfig] of Object.entries(config.upstreams)) upstreams.set(name, createUpstream(name, upstreamConfig, options.env));

  return {
    names: [...upstreams.keys()],
    handler: (api) => function callUpstream(req: Request, res: Response, next: NextFunction) {
      const model = (req.body as { model: string }).model;
      const provider = providerOfModel(model, api, config, options.pricing);
      const upstream = upstreams.get(provider);
      if (!upstream) {
        next(new ApiError('invalid_request', `No upstream serves the model "${model}" (provider "${provider}").`, { param: 'model' }));
        return;
      }
      if (upstream.api !== providerOf(api)) {
        const route = upstream.api === 'anthropic' ? '/v1/messages' : '/v1/chat/completions or /v1/responses';
        next(new ApiError('invalid_request', `The model "${model}" is served by an ${upstream.api === 'anthropic' ? 'Anthropic' : 'OpenAI'}-compatible upstream: call ${route}.`, { param: 'model' }));
        return;
      }
      upstream.forward(api, req, res, next);
    },
    close: async () => {
      await Promise.all([...upstreams.values()].map((upstream) => upstream.close()));
    },
  };
}
