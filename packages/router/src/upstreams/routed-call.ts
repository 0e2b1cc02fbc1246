// Model groups and request classes in the proxy: each request's plan, its tries across upstreams, translation between APIs.
import type { NextFunction, Request, Response } from 'express';
import { ApiError } from '@tollgate/core';
import type { Pricing, ProviderApi } from '@tollgate/core';
import { kindsSpeaking, upstreamKinds } from '@tollgate/providers/routes';
import { canTranslate, createModelRouter, translateRequest } from '../index.js';
import type {
  AttemptResult,
  ModelRouter,
  ResolvedTarget,
  RouteAttempts,
  RouteFailure,
  RoutePlan,
  RouterEvent,
  TargetReport,
} from '../index.js';
import type { RoutingOptions } from './routing-config.js';
import type { Upstream } from './upstream.js';
import type { RoutedTry } from './upstream-outcome.js';
import type { UpstreamProbes } from './upstream-health.js';

/** The API a request of `clientApi` is sent to an upstream of `kind` in: its own when the upstream speaks it. */
function targetApiFor(clientApi: ProviderApi, kind: string): ProviderApi {
  if (kindsSpeaking(clientApi).includes(kind)) return clientApi;
  return upstreamKinds().get(kind)?.ownApi ?? clientApi;
}

/** Whether a content part list (at any depth of a message list) holds an image. */
function carriesImages(messages: unknown): boolean {
  if (!Array.isArray(messages)) return false;
  for (const message of messages) {
    const content = (message as { content?: unknown } | null)?.content;
    if (!Array.isArray(content)) continue;
    for (const part of content) {
      const type = (part as { type?: unknown } | null)?.type;
      if (type === 'image_url' || type === 'image' || type === 'input_image') return true;
    }
  }
  return false;
}

export interface RoutedCalls {
  readonly router: ModelRouter;
  /**
   * Right after the call's declaration: a request for a group or a class gets its plan, and its
   * call runs with the first target's model (so that the meter estimates and the budget reserves
   * for that target). Undefined: the model is not the router's.
   */
  planCall(req: Request): RoutePlan | undefined;
  /**
   * The request's tenant spent its budget for `model`: a planned request moves to its plan's first
   * target with another model not known spent (true), or has none left (false). Its tries skip `model`.
   */
  skipSpentModel(req: Request, res: Response, model: string): boolean;
  /** Serves a planned request (false: it has no plan). */
  serve(clientApi: ProviderApi, req: Request, res: Response, next: NextFunction): boolean;
  /** Each target's breaker, time to first byte and counts, with its health checks' word when they run. */
  health(): TargetReport[];
  /** The model groups none of whose targets answers: each one's breaker open, or its health checks down. */
  unavailableGroups(): string[];
}

declare module '@tollgate/core' {
  interface ContextVariableMap {
    /** The request's routing plan, between its declaration and its handler. */
    'gateway.plan': RoutePlan;
    /** Models whose budget the request's tenant has spent: its tries skip their targets. */
    'gateway.spentModels': Set<string>;
  }
}

/**
 * One routed request's side of its tries, and the try's link to the upstream (its `onResult` and
 * `translation`). A class, not an object of closures: `pnpm start` runs the proxy through tsx,
 * which names every closure made per request, a cost paid on each.
 */
class RoutedRequest implements RouteAttempts, RoutedTry {
  /** The target the budget reservation is priced for: the first one's, from admission. */
  private pricedModel: string;
  private pricedUpstream: string;
  /** The prepared try: its upstream, the API and body it goes in, and the translation back (undefined: same API). */
  private upstream: Upstream | undefined;
  private targetApi: ProviderApi | undefined;
  private body: Record<string, unknown> | undefined;
  translation: RoutedTry['translation'];
  /** Resolves the running try's promise. */
  private told: ((result: AttemptResult) => void) | undefined;

  constructor(
    private readonly clientApi: ProviderApi,
    private readonly plan: RoutePlan,
    private readonly req: Request,
    private readonly res: Response,
    private readonly next: NextFunction,
    private readonly upstreams: ReadonlyMap<string, Upstream>,
    private readonly reprice: RoutedCallsOptions['reprice'],
    private readonly runWith: (req: Request, target: Pick<ResolvedTarget, 'model' | 'upstream'>) => void,
  ) {
    this.pricedModel = req.tollgate.call!.model!;
    this.pricedUpstream = req.tollgate.servedBy!;
  }

  gone(): boolean {
    // Closed before its answer was written: the client left.
    return this.res.closed && !this.res.writableFinished;
  }

  prepare(target: ResolvedTarget): string | undefined | Promise<string | undefined> {
    const { clientApi } = this;
    const upstream = this.upstreams.get(target.upstream)!;
    const targetApi = targetApiFor(clientApi, upstream.api);
    if (!canTranslate(clientApi, targetApi))
      return `the ${upstream.api} upstream "${upstream.name}" cannot serve ${clientApi} requests`;
    if (this.req.tollgate.get('gateway.spentModels')?.has(target.model))
      return `the model budget of ${target.model} is spent`;
    this.runWith(this.req, target);
    // The reservation follows the target actually tried; it was made at admission for the first one.
    if (!this.reprice || target.model === this.pricedModel) return this.ready(target, upstream, targetApi);
    return this.reprice(this.req, this.res).then((covered) => {
      if (!covered) {
        // Back to the target the reservation covers: what the request is estimated (and billed, if nothing else runs) as.
        this.runWith(this.req, { model: this.pricedModel, upstream: this.pricedUpstream });
        return 'the budget cannot cover this target';
      }
      this.pricedModel = target.model;
      this.pricedUpstream = target.upstream;
      return this.ready(target, upstream, targetApi);
    });
  }

  /** The body in the target's API, or why it cannot be. */
  private ready(target: ResolvedTarget, upstream: Upstream, targetApi: ProviderApi): string | undefined {
    const { clientApi } = this;
    const translated = translateRequest(this.req.tollgate.call!.body, clientApi, targetApi, target.model);
    if (!translated.ok) return translated.reason;
    // An upstream that speaks the client's API gets its request as it is (but for the model): nothing to translate back.
    this.translation =
      targetApi === clientApi
        ? undefined
        : { clientApi, targetApi, clientModel: this.req.tollgate.requestedModel ?? this.plan.requestedModel };
    this.upstream = upstream;
    this.targetApi = targetApi;
    this.body = translated.body;
    return undefined;
  }

  send(target: ResolvedTarget): Promise<AttemptResult> {
    return new Promise((resolve) => {
      this.told = resolve;
      this.upstream!.send(this.targetApi!, target.model, this.body!, this.req, this.res, this.next, this);
    });
  }

  /** The upstream's word on how the try ended (once per try). */
  onResult(result: AttemptResult): void {
    const told = this.told;
    this.told = undefined;
    told?.(result);
  }

  fail(failure: RouteFailure): void {
    const headers =
      failure.retryAfterMs === undefined
        ? undefined
        : { 'retry-after': Math.max(1, Math.ceil(failure.retryAfterMs / 1000)) };
    this.next(
      new ApiError('upstream_error', failure.message, { status: failure.status, ...(headers ? { headers } : {}) }),
    );
  }
}

interface RoutedCallsOptions {
  upstreams: ReadonlyMap<string, Upstream>;
  pricing: Pricing;
  /** Re-prices the request's budget reservation for the model its call now runs with; false: it cannot be covered. */
  reprice?: (req: Request, res: Response) => Promise<boolean>;
  /** Skipped targets, retries and failed tries, for the operator. */
  log?: (event: RouterEvent) => void;
  /** Told once each time a target's circuit breaker opens (`upstream/model`, and the last failure). */
  onBreakerOpen?: (target: string, reason: string | undefined) => void;
  /** The active health checks, when the config runs them: routing skips what they hold down; reports carry them. */
  probes?: UpstreamProbes;
}

export function createRoutedCalls(config: RoutingOptions, options: RoutedCallsOptions): RoutedCalls | undefined {
  if (!config.modelGroups) return undefined;
  const { upstreams, pricing, reprice, log, onBreakerOpen, probes } = options;
  const router = createModelRouter({
    modelGroups: config.modelGroups,
    ...(config.requestClasses ? { requestClasses: config.requestClasses } : {}),
    ...(config.retry ? { retry: config.retry } : {}),
    ...(config.circuitBreaker ? { circuitBreaker: config.circuitBreaker } : {}),
    pricing,
    ...(probes
      ? {
          checks: {
            down: (target: ResolvedTarget) => probes.down(target.upstream, target.model),
            latencyMs: (target: ResolvedTarget) => probes.last(target.upstream, target.model)?.latencyMs,
          },
        }
      : {}),
    ...(log ? { onEvent: log } : {}),
    ...(onBreakerOpen
      ? { onBreakerOpen: (target: ResolvedTarget, reason: string | undefined) => onBreakerOpen(target.id, reason) }
      : {}),
  });
  const classHeader = router.config.classHeader;
  const health = () =>
    router.health().map((report) => {
      const last = probes?.last(report.upstream, report.model);
      return last ? { ...report, probe: last } : report;
    });

  /** Runs the call with `target`'s model, priced as it: the meter's estimate follows. */
  function runWith(req: Request, target: Pick<ResolvedTarget, 'model' | 'upstream'>): void {
    const ctx = req.tollgate;
    if (ctx.call!.model !== target.model) ctx.switchModel(target.model, pricing.forRequest(ctx).find(target.model)!);
    ctx.servedBy = target.upstream;
  }

  function planCall(req: Request): RoutePlan | undefined {
    const call = req.tollgate.call;
    const model = call?.model;
    if (!call || model === undefined || !router.serves(model)) return undefined;
    // Before the meter's estimate: the body's size in bytes over four, an upper-side guess good enough to tell a short question from a long document.
    const length = Number(req.headers['content-length']);
    const inputTokens = Number.isFinite(length) ? Math.ceil(length / 4) : 0;
    // What only class rules read is read only for a class (every field set, none spread in: this runs per request).
    const classed = router.config.classes.has(model);
    const body = call.body;
    const classHint = classed ? req.headers[classHeader] : undefined;
    const plan = router.plan({
      model,
      inputTokens,
      outputTokens: call.outputCap,
      serviceTier: call.serviceTier,
      speed: call.speed,
      inferenceGeo: call.inferenceGeo,
      tools: classed && Array.isArray(body.tools) && body.tools.length > 0,
      images: classed && carriesImages(body.messages ?? body.input),
      route: classed ? req.path : undefined,
      requestedClass: typeof classHint === 'string' ? classHint : undefined,
    });
    if (!plan) return undefined;
    req.tollgate.set('gateway.plan', plan);
    runWith(req, router.firstAvailable(plan) ?? plan.targets[0]!);
    return plan;
  }

  function skipSpentModel(req: Request, _res: Response, model: string): boolean {
    const ctx = req.tollgate;
    const plan = ctx.get('gateway.plan');
    if (!plan) return false;
    let spent = ctx.get('gateway.spentModels');
    if (!spent) ctx.set('gateway.spentModels', (spent = new Set()));
    spent.add(model);
    const left = plan.targets.filter((target) => !spent.has(target.model));
    if (left.length === 0) return false;
    // As at planning: the first whose breaker lets it be tried, else the first.
    runWith(req, router.firstAvailable({ ...plan, targets: left }) ?? left[0]!);
    return true;
  }

  function serve(clientApi: ProviderApi, req: Request, res: Response, next: NextFunction): boolean {
    const plan = req.tollgate.get('gateway.plan');
    if (!plan) return false;
    void router.run(plan, new RoutedRequest(clientApi, plan, req, res, next, upstreams, reprice, runWith));
    return true;
  }

  return {
    router,
    planCall,
    skipSpentModel,
    serve,
    health,
    unavailableGroups() {
      const reports = new Map(health().map((report) => [report.target, report]));
      const down = (target: ResolvedTarget) => {
        const report = reports.get(target.id)!;
        return report.breaker === 'open' || report.probe?.state === 'down';
      };
      return [...router.config.groups.values()].flatMap((group) => (group.targets.every(down) ? [group.name] : []));
    },
  };
}
