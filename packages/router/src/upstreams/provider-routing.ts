// Sends each request to what serves its model: the in-process mock, or the configured upstream of the model's provider.
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { ApiError, createPricing } from '@tollgate/core';
import type { Pricing, ProviderApi } from '@tollgate/core';
import { adapterFor, providerCall } from '@tollgate/providers';
import { kindsSpeaking, upstreamKinds } from '@tollgate/providers/routes';
import type { CallDeclaration } from '@tollgate/providers';
import type { MockProvider } from '@tollgate/providers/mock';
import type { RoutingOptions, UpstreamOptions } from './routing-config.js';
import { createUpstream, resolveUpstreamKey } from './upstream.js';
import type { Upstream } from './upstream.js';
import type { UpstreamObserver } from './upstream-outcome.js';
import { createRoutedCalls } from './routed-call.js';
import type { RoutedCalls } from './routed-call.js';
import { resolveHealthChecks } from './health-check-options.js';
import { probeUpstreams } from './upstream-health.js';
import type { ProbeEvent } from './upstream-health.js';
import type { RouterEvent } from '../index.js';

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
  /**
   * Where a WebSocket session of OpenAI's Realtime API for `model` goes: the `openai` upstream of the model's provider,
   * its base URL as `ws(s)://.../realtime?model=`, with its own key. Undefined: none serves it (the mock, another kind).
   */
  realtimeUpstream(model: string): RealtimeUpstream | undefined;
  /** Names of the upstreams, or ["mock"]. */
  readonly names: string[];
  /** The model groups and request classes, when the config has any. */
  readonly routes: RoutedCalls | undefined;
  /**
   * What does not answer now: the upstreams their health checks hold down (`healthChecks`), and the model groups
   * none of whose targets answers (breaker open, or checked down). Both empty for the mock.
   */
  unavailable(): { upstreams: string[]; modelGroups: string[] };
  close(): Promise<void>;
}

/** An upstream's Realtime WebSocket: its name, URL and the headers that carry its key (never the caller's). */
export interface RealtimeUpstream {
  readonly name: string;
  /** Its base URL as configured (`https://api.openai.com/v1`), for its HTTP calls (client secrets). */
  readonly baseUrl: string;
  /** Its Realtime WebSocket for the model. */
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
}

/** The Realtime WebSocket of an `openai` upstream serving `model`, from its base URL (`https://api.openai.com/v1`). */
function realtimeUpstreamOf(
  name: string,
  upstream: UpstreamOptions,
  model: string,
  env: NodeJS.ProcessEnv | undefined,
): RealtimeUpstream | undefined {
  if (upstream.api !== 'openai') return undefined;
  const baseUrl = upstream.baseUrl.replace(/\/+$/, '');
  const base = baseUrl.replace(/^http/, 'ws');
  const key = resolveUpstreamKey(upstream, env);
  return {
    name,
    baseUrl,
    url: `${base}/realtime?model=${encodeURIComponent(model)}`,
    headers: key ? { authorization: `Bearer ${key}` } : {},
  };
}

/** The provider a model belongs to: the config's `models` entry, else the catalogue's, else the API's. */
export function providerOfModel(
  model: string,
  api: ProviderApi,
  config: RoutingOptions,
  pricing: Pricing | undefined,
): string {
  const configured = config.models && Object.hasOwn(config.models, model) ? config.models[model] : undefined;
  if (configured) return configured.provider;
  return pricing?.find(model)?.provider ?? adapterFor(api).provider;
}

/** `a`, `a or b`, `a, b or c`. */
function eitherOf(items: readonly string[]): string {
  return items.length < 2 ? (items[0] ?? '') : `${items.slice(0, -1).join(', ')} or ${items.at(-1)!}`;
}

/** What a client calling `api` is told to call instead: the routes, for models of `api`'s kind, that `kind` speaks. */
function routesOfKind(kind: string, api: ProviderApi): string {
  const modelKind = adapterFor(api).modelKind ?? 'generation';
  const paths = [...(upstreamKinds().get(kind)?.apis.keys() ?? [])]
    .map((spoken) => adapterFor(spoken))
    .filter((adapter) => (adapter.modelKind ?? 'generation') === modelKind)
    .flatMap((adapter) => (adapter.route ? [adapter.route.shown ?? adapter.route.path] : []));
  return paths.length > 0 ? eitherOf([...new Set(paths)]) : 'the route of its API';
}

/**
 * The declaration of a call on `api`'s route. A call whose model is served by an upstream of a kind whose own API has
 * no route (a dialect reached through this one: self-hosted servers through OpenAI's chat route) is declared with that
 * API's adapter (its cap fields, its provider).
 */
function callDeclaration(
  api: ProviderApi,
  params: CallDeclaration['params'] | undefined,
  config: RoutingOptions,
  pricing: Pricing | undefined,
): RequestHandler {
  const declare = providerCall(api, { params });
  const dialects = new Map<string, RequestHandler>();
  for (const [name, upstream] of Object.entries(config.upstreams ?? {})) {
    const kind = upstream.api;
    const own = upstreamKinds().get(kind)?.ownApi;
    if (own === undefined || own === api || adapterFor(own).route || !kindsSpeaking(api).includes(kind)) continue;
    dialects.set(name, providerCall(own, { params }));
  }
  if (dialects.size === 0) return declare;
  return function declareDialectCall(req: Request, res: Response, next: NextFunction): void {
    // The body passed validation: a model it names is a string.
    const model = (req.body as { model?: unknown }).model;
    const dialect = typeof model === 'string' ? dialects.get(providerOfModel(model, api, config, pricing)) : undefined;
    (dialect ?? declare)(req, res, next);
  };
}

/** The router of a gateway without upstreams: every call goes to the in-process mock. */
function mockRouter(mock: MockProvider, declareCall: ProviderRouter['declareCall']): ProviderRouter {
  return {
    names: ['mock'],
    routes: undefined,
    unavailable: () => ({ upstreams: [], modelGroups: [] }),
    declareCall,
    forwardCount: () => false,
    realtimeUpstream: () => undefined,
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

/** A call's declaration followed by its plan: a group's or a class's request runs with its first target's model. */
function declarePlannedCall(declare: RequestHandler, routes: RoutedCalls): RequestHandler {
  // The declaration answers synchronously: its `next` is captured by one function made here,
  // not by a closure made per request.
  let passed = false;
  let failure: unknown;
  const capture = (error?: unknown) => {
    passed = true;
    failure = error;
  };
  // From here on the call runs with that model (estimate, limits, budget).
  return function declareRoutedCall(req: Request, res: Response, next: NextFunction): void {
    passed = false;
    failure = undefined;
    declare(req, res, capture);
    if (!passed) return;
    if (failure === undefined) routes.planCall(req);
    next(failure);
  };
}

interface ProviderRouterOptions {
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
  /** Told how each health check's round ended (the metrics). */
  observeProbe?: (event: ProbeEvent) => void;
}

export function createProviderRouter(config: RoutingOptions, options: ProviderRouterOptions): ProviderRouter {
  const declareCall = (api: ProviderApi, params?: CallDeclaration['params']): RequestHandler =>
    callDeclaration(api, params, config, options.pricing);
  if (!config.upstreams) {
    if (!options.mock) throw new Error('createProviderRouter: no upstreams configured and no mock provider given');
    return mockRouter(options.mock, declareCall);
  }

  const upstreams = new Map<string, Upstream>();
  const allKeys = Object.values(config.upstreams).map((upstreamConfig) =>
    resolveUpstreamKey(upstreamConfig, options.env),
  );
  for (const [name, upstreamConfig] of Object.entries(config.upstreams)) {
    upstreams.set(name, createUpstream(name, upstreamConfig, options.env, allKeys, options.observeUpstream));
  }
  const checks = resolveHealthChecks(config);
  const targets = Object.values(config.modelGroups ?? {}).flatMap((group) => group.targets);
  const probes = checks && probeUpstreams(upstreams, targets, checks, options.observeProbe);
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
    declareCall: routes ? (api, params) => declarePlannedCall(declareCall(api, params), routes) : declareCall,
    forwardCount(api, model, req, res, next) {
      const upstream = upstreams.get(providerOfModel(model, api, config, options.pricing));
      if (!upstream || !kindsSpeaking(api).includes(upstream.api)) return false;
      upstream.forwardCount(api, model, req, res, next);
      return true;
    },
    realtimeUpstream(model) {
      const provider = providerOfModel(model, 'openai.responses', config, options.pricing);
      const upstream = config.upstreams?.[provider];
      return upstream && realtimeUpstreamOf(provider, upstream, model, options.env);
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
        if (!kindsSpeaking(api).includes(upstream.api)) {
          next(
            new ApiError(
              'invalid_request',
              `The model "${model}" is served by the ${upstream.api} upstream "${upstream.name}": ` +
                `call ${routesOfKind(upstream.api, api)}.`,
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
