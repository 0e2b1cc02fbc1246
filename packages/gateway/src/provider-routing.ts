// Sends each request to what serves its model: the in-process mock, or the configured upstream of the model's provider.
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { ApiError, createPricing } from '@tollgate/core';
import type { Pricing, ProviderApi } from '@tollgate/core';
import { adapterFor, openAiCompatible, providerCall } from '@tollgate/providers';
import { adapterOfUpstreamKind } from '@tollgate/providers/routes';
import type { CallDeclaration } from '@tollgate/providers';
import type { MockProvider } from '@tollgate/providers/mock';
import { defaultUpstreamKind } from './config/index.js';
import type { ProxyConfig, UpstreamKind } from './config/index.js';
import { createUpstream, resolveUpstreamKey } from './upstream.js';
import type { Upstream } from './upstream.js';
import type { UpstreamObserver } from './upstream-answer.js';
import { createRoutedCalls, kindsOfApi } from './routed-call.js';
import type { RoutedCalls } from './routed-call.js';
import { probeUpstreams } from './upstream-health.js';
import type { RouterEvent } from '@tollgate/router';

export interface ProviderRouter {
  /**
   * The middleware declaring a route's call. Chat requests whose model an `openai-compatible`
   * upstream serves are declared with that adapter (its cap field, its provider).
   */
  declareCall(api: ProviderApi, params?: CallDeclaration['params']): RequestHandler;
  /** The final handler of a provider route. */
  handler(api: ProviderApi): (req: Request, res: Response, next: NextFunction) => void;
  /**
   * Sends a token count to the upstream serving `model`, when one of the API's kind is configured (true); false:
   * none is (the mock, another provider's kind), and the caller answers from its own count.
   */
  forwardCount(api: ProviderApi, model: string, req: Request, res: Response, next: NextFunction): boolean;
  /** Names of the upstreams, or ["mock"]. */
  readonly names: string[];
  /** The model groups and request classes, when the config has any. */
  readonly routes: RoutedCalls | undefined;
  /**
   * What does not answer now: the upstreams whose last active probe failed (`healthProbe`), and the model groups
   * none of whose targets answers (breaker open, or upstream probed down). Both empty for the mock.
   */
  unavailable(): { upstreams: string[]; modelGroups: string[] };
  close(): Promise<void>;
}

/** The provider a model belongs to: the config's `models` entry, else the catalogue's, else the API's. */
export function providerOfModel(
  model: string,
  api: ProviderApi,
  config: ProxyConfig,
  pricing: Pricing | undefined,
): string {
  const configured = config.models && Object.hasOwn(config.models, model) ? config.models[model] : undefined;
  if (configured) return configured.provider;
  return pricing?.find(model)?.provider ?? adapterFor(api).provider;
}

/** What a client is told to call instead, per kind of the gateway's own upstreams. */
const ROUTE_OF_KIND: Readonly<Record<string, string>> = {
  openai: '/v1/chat/completions or /v1/responses',
  'openai-compatible': '/v1/chat/completions',
  anthropic: '/v1/messages',
  gemini: '/v1beta/models/{model}:generateContent',
  'azure-openai': '/v1/chat/completions',
};

/** The route serving an upstream of `kind`: the gateway's own, or the route of the adapter that declares the kind. */
function routeOfKind(kind: UpstreamKind): string {
  if (Object.hasOwn(ROUTE_OF_KIND, kind)) return ROUTE_OF_KIND[kind]!;
  return adapterOfUpstreamKind(kind)?.route?.path ?? 'the route of its API';
}

/** Chat calls are declared as `openai.compatible` when their model's upstream is of that kind. */
function chatCallDeclaration(config: ProxyConfig, pricing: Pricing | undefined): RequestHandler {
  const declareChat = providerCall('openai.chat');
  const upstreams = Object.entries(config.upstreams ?? {});
  const compatible = new Set(
    upstreams
      .filter(([name, upstream]) => (upstream.api ?? defaultUpstreamKind(name)) === 'openai-compatible')
      .map(([name]) => name),
  );
  if (compatible.size === 0) return declareChat;
  const declareCompatible = providerCall(openAiCompatible);
  return function declareChatCall(req: Request, res: Response, next: NextFunction): void {
    // The body passed validation: its model is a string.
    const model = (req.body as { model: string }).model;
    const declare = compatible.has(providerOfModel(model, 'openai.chat', config, pricing))
      ? declareCompatible
      : declareChat;
    declare(req, res, next);
  };
}

export interface ProviderRouterOptions {
  mock?: MockProvider;
  pricing?: Pricing;
  env?: NodeJS.ProcessEnv;
  /** Told how each upstream call ended (the metrics). */
  observeUpstream?: UpstreamObserver;
  /** Re-prices a routed request's budget reservation when it moves to another target (the budget guard's `reprice`). */
  reprice?: (req: Request, res: Response) => Promise<boolean>;
  /** Told of targets skipped, retries and failed tries. */
  onRouteEvent?: (event: RouterEvent) => void;
  /** Told when a routing target's circuit breaker opens. */
  onBreakerOpen?: (target: string, reason: string | undefined) => void;
}

export function createProviderRouter(config: ProxyConfig, options: ProviderRouterOptions): ProviderRouter {
  const declareCall = (api: ProviderApi, params?: CallDeclaration['params']): RequestHandler =>
    api === 'openai.chat' ? chatCallDeclaration(config, options.pricing) : providerCall(api, { params });
  if (!config.upstreams) {
    const mock = options.mock;
    if (!mock) throw new Error('createProviderRouter: no upstreams configured and no mock provider given');
    return {
      names: ['mock'],
      routes: undefined,
      unavailable: () => ({ upstreams: [], modelGroups: [] }),
      declareCall,
      forwardCount: () => false,
      handler: (api) => {
        const serve = (mock.handlers as Partial<Record<ProviderApi, (req: Request, res: Response) => void>>)[api];
        if (!serve) throw new Error(`createProviderRouter: the mock provider does not serve ${api}`);
        return function callMockProvider(req: Request, res: Response) {
          // The mock is this process's provider: the call is sent (its span starts, the spool notes it) like any other.
          req.tollgate.markSending();
          serve(req, res);
        };
      },
      close: async () => mock.close(),
    };
  }

  const upstreams = new Map<string, Upstream>();
  const allKeys = Object.values(config.upstreams).map((upstreamConfig) =>
    resolveUpstreamKey(upstreamConfig, options.env),
  );
  for (const [name, upstreamConfig] of Object.entries(config.upstreams)) {
    upstreams.set(name, createUpstream(name, upstreamConfig, options.env, allKeys, options.observeUpstream));
  }
  const probes = config.healthProbe ? probeUpstreams(upstreams, config.healthProbe) : undefined;
  const routes = createRoutedCalls(config, {
    upstreams,
    ...(probes ? { probes } : {}),
    pricing: options.pricing ?? createPricing({ models: { ...config.models } }),
    ...(options.reprice ? { reprice: options.reprice } : {}),
    ...(options.onRouteEvent ? { log: options.onRouteEvent } : {}),
    ...(options.onBreakerOpen ? { onBreakerOpen: options.onBreakerOpen } : {}),
  });

  return {
    names: [...upstreams.keys()],
    routes,
    unavailable: () => ({ upstreams: probes?.failing() ?? [], modelGroups: routes?.unavailableGroups() ?? [] }),
    declareCall: routes
      ? (api, params) => {
          const declare = declareCall(api, params);
          // The declaration answers synchronously: its `next` is captured by one function made here,
          // not by a closure made per request.
          let passed = false;
          let failure: unknown;
          const capture = (error?: unknown) => {
            passed = true;
            failure = error;
          };
          // A group's or a class's request runs with its first target's model from here on (estimate, limits, budget).
          return function declareRoutedCall(req: Request, res: Response, next: NextFunction): void {
            passed = false;
            failure = undefined;
            declare(req, res, capture);
            if (!passed) return;
            if (failure === undefined) routes.planCall(req);
            next(failure);
          };
        }
      : declareCall,
    forwardCount(api, model, req, res, next) {
      const upstream = upstreams.get(providerOfModel(model, api, config, options.pricing));
      if (!upstream || !kindsOfApi(api).includes(upstream.api)) return false;
      upstream.forwardCount(api, model, req, res, next);
      return true;
    },
    handler: (api) =>
      function callUpstream(req: Request, res: Response, next: NextFunction) {
        if (routes?.serve(api, req, res, next)) return;
        // The declared call's model: after any downgrade, whatever the API's shape.
        const model = req.tollgate.call!.model!;
        const provider = providerOfModel(model, api, config, options.pricing);
        const upstream = upstreams.get(provider);
        if (!upstream) {
          next(
            new ApiError('invalid_request', `No upstream serves the model "${model}" (provider "${provider}").`, {
              param: 'model',
            }),
          );
          return;
        }
        if (!kindsOfApi(api).includes(upstream.api)) {
          next(
            new ApiError(
              'invalid_request',
              `The model "${model}" is served by the ${upstream.api} upstream "${upstream.name}": call ${routeOfKind(upstream.api)}.`,
              { param: 'model' },
            ),
          );
          return;
        }
        upstream.forward(api, req, res, next);
      },
    close: async () => {
      probes?.close();
      await Promise.all([...upstreams.values()].map((upstream) => upstream.close()));
    },
  };
}
