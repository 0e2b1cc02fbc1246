// createModelRouter: picks a request's targets (strategy, breakers) and runs its attempts (retries, backoff, fallback).
import { TollgateError } from '@tollgate/core';
import { maxCostNanoUsd } from '@tollgate/core/costs';
import type { Pricing } from '@tollgate/core';
import { retryDelayMs } from './backoff.js';
import { resolveRouterOptions } from './options.js';
import type { ModelRouterOptions, ResolvedGroup, ResolvedTarget, RouterConfig } from './options.js';
import { classifyRequest } from './request-classes.js';
import type { RequestTraits } from './request-classes.js';
import { TargetHealth } from './target-health.js';
import type { TargetReport } from './target-health.js';

/** A request's route: its group and the targets to try, best first. */
export interface RoutePlan {
  /** The model the client asked for (a group name or a class alias). */
  readonly requestedModel: string;
  readonly group: ResolvedGroup;
  readonly targets: readonly ResolvedTarget[];
}

/** What the router needs of a request to plan it. */
export interface RouteRequest extends RequestTraits {
  /** The model the client asked for. */
  model: string;
  /** The output cap per answer when the request sets one (else each target's documented maximum). */
  outputTokens?: number | undefined;
  /** The service tier the request asks for (OpenAI's `service_tier`): `cheapest` compares the targets at it. */
  serviceTier?: string | undefined;
  /** The speed and region the request asks for (Anthropic's `speed`, `inference_geo`): priced as the tier is. */
  speed?: string | undefined;
  inferenceGeo?: string | undefined;
}

/** How one try of a target ended. */
export type AttemptResult =
  /** The target answered (a success, or a client error passed on as it came): the request is done. */
  | { kind: 'answered'; firstByteMs: number }
  /**
   * It failed before anything reached the client, in a way worth another try. `deliver` gives the
   * client this failure as it is, when no other try follows.
   */
  | { kind: 'retryable'; reason: string; retryAfterMs?: number; deliver: () => void }
  /** It failed and the transport already answered the client (or cut the answer): no other try. */
  | { kind: 'failed'; reason: string };

/** Why no target answered, when no try's own failure can be passed on. */
export interface RouteFailure {
  /** 503 when every target's breaker is open, 502 when none could take the request. */
  status: 502 | 503;
  message: string;
  /** When an open breaker lets a probe through, for a `retry-after`. */
  retryAfterMs?: number;
}

/** The caller's side of one request's attempts: the transport and what it must do between tries. */
export interface RouteAttempts {
  /**
   * Before each target's first try: undefined to go on, else why this target cannot take the
   * request (it is skipped, the reason logged). Where the budget re-prices the reservation.
   */
  prepare(target: ResolvedTarget): string | undefined | Promise<string | undefined>;
  /** One try of the target. */
  send(target: ResolvedTarget): Promise<AttemptResult>;
  /** No try could answer the client: render this. */
  fail(failure: RouteFailure): void;
  /**
   * True once the client left: no try follows (checked before each try and after each wait; a
   * function rather than an AbortSignal, which costs every request a few µs to make).
   */
  gone?: () => boolean;
}

export interface RouterEvent {
  type: 'skipped' | 'retry' | 'failed';
  requestedModel: string;
  target: string;
  reason: string;
  /** For `retry`: the wait before it. */
  delayMs?: number;
}

/** What active health checks say of a target (see `ModelRouterSetup.checks`). */
export interface TargetChecks {
  /** The checks took the target out of routing. */
  down(target: ResolvedTarget): boolean;
  /** The last probe's latency, ms; undefined before one. */
  latencyMs(target: ResolvedTarget): number | undefined;
}

export interface ModelRouterSetup extends ModelRouterOptions {
  /**
   * Active health checks: every strategy skips a target they mark down (tried, in the plan's order, only when every
   * target is down), and `lowest-latency` blends their latency with live traffic's. @default none
   */
  checks?: TargetChecks;
  /** Prices of every target's model: `cheapest` compares them, and an unpriced target is refused at construction. */
  pricing?: Pricing;
  /** Told of skipped targets, retries and failed tries (the operator's log). */
  onEvent?: (event: RouterEvent) => void;
  /** Told once when a target's breaker opens. */
  onBreakerOpen?: (target: ResolvedTarget, reason: string | undefined) => void;
  /** Randomness for jitter and `weighted`. @default Math.random */
  random?: () => number;
}

export interface ModelRouter {
  readonly config: RouterConfig;
  /** Whether `model` is a group or a class alias this router serves. */
  serves(model: string): boolean;
  /** The request's route, or undefined when its model is not the router's. */
  plan(request: RouteRequest): RoutePlan | undefined;
  /** The first target of the plan whose breaker lets a call through now (and that its checks do not hold down). */
  firstAvailable(plan: RoutePlan): ResolvedTarget | undefined;
  /** Runs the request's tries until one answers or none is left. Never rejects. */
  run(plan: RoutePlan, attempts: RouteAttempts): Promise<void>;
  /** Every target's breaker, latency and counts. */
  health(): TargetReport[];
  /** Every target (each once, whatever groups share it). */
  readonly targets: readonly ResolvedTarget[];
}

/** Output tokens assumed for a target's cost when the request sets no cap and the catalogue names no maximum. */
const DEFAULT_OUTPUT_TOKENS = 4096;

/** What the parts of one router share: its resolved options, each target's health and the setup's hooks. */
interface RouterState {
  readonly config: RouterConfig;
  /** By target id: one per target, however many groups share it. */
  readonly health: ReadonlyMap<string, TargetHealth<AttemptResult>>;
  readonly pricing: Pricing | undefined;
  readonly checks: TargetChecks | undefined;
  readonly onEvent: ((event: RouterEvent) => void) | undefined;
  readonly random: () => number;
}

/** Why a try's result counts against its target (undefined: it answered). */
function failureOf(result: AttemptResult): string | undefined {
  return result.kind === 'answered' ? undefined : result.reason;
}

function wait(ms: number): Promise<void> {
  return ms <= 0 ? Promise.resolve() : new Promise((resolve) => setTimeout(resolve, ms));
}

function healthOf(state: RouterState, target: ResolvedTarget): TargetHealth<AttemptResult> {
  return state.health.get(target.id)!;
}

/** Whether a call may go to the target now: its breaker lets it through, and (unless `evenDown`) its checks pass. */
function callable(state: RouterState, target: ResolvedTarget, now: number, evenDown = false): boolean {
  if (!healthOf(state, target).available(now)) return false;
  return evenDown || state.checks === undefined || !state.checks.down(target);
}

/**
 * The latency `lowest-latency` compares: the mean of live traffic's time to first byte and the last probe's latency,
 * whichever are known (probes keep an idle target's figure current); 0 for a target never measured, which goes first.
 */
function latencyOf(state: RouterState, target: ResolvedTarget): number {
  const live = healthOf(state, target).ttfbMs;
  const probed = state.checks?.latencyMs(target);
  if (live === undefined) return probed ?? 0;
  return probed === undefined ? live : (live + probed) / 2;
}

/** Every target once, with its health; a target missing from the pricing table fails here, before any request. */
function trackTargets(
  config: RouterConfig,
  pricing: Pricing | undefined,
  onBreakerOpen: ModelRouterSetup['onBreakerOpen'],
): { health: Map<string, TargetHealth<AttemptResult>>; targets: ResolvedTarget[] } {
  const health = new Map<string, TargetHealth<AttemptResult>>();
  const targets: ResolvedTarget[] = [];
  for (const group of config.groups.values()) {
    for (const target of group.targets) {
      if (health.has(target.id)) continue;
      if (pricing && !pricing.find(target.model)) {
        throw new TollgateError(
          'ERR_TG_ROUTER_UNPRICED_TARGET',
          `modelGroups.${group.name}: the target model "${target.model}" has no price; add it to the pricing table`,
        );
      }
      health.set(target.id, new TargetHealth(target, config.breaker, config.latencyAlpha, failureOf, onBreakerOpen));
      targets.push(target);
    }
  }
  return { health, targets };
}

/** A target's cost bound at the prices in use now (a price source's refresh included) and the tier, speed and region asked for. */
function estimatedCost(pricing: Pricing | undefined, target: ResolvedTarget, request: RouteRequest): number {
  const price = pricing?.find(target.model, request.serviceTier);
  if (!price) return Number.POSITIVE_INFINITY;
  return maxCostNanoUsd(
    request.inputTokens,
    request.outputTokens ?? price.maxOutputTokens ?? DEFAULT_OUTPUT_TOKENS,
    price,
    request,
  );
}

/** The group's targets in the strategy's order (the group's own list when that is the order: never changed by the caller). */
function orderTargets(state: RouterState, group: ResolvedGroup, request: RouteRequest): readonly ResolvedTarget[] {
  const list = group.targets;
  if (list.length === 1) return list;
  switch (group.strategy) {
    case 'fallback':
      return list;
    case 'cheapest': {
      const costs = new Map(list.map((target) => [target, estimatedCost(state.pricing, target, request)]));
      return [...list].sort((a, b) => costs.get(a)! - costs.get(b)!);
    }
    case 'lowest-latency':
      // A target never measured goes first: it gets its first sample.
      return [...list].sort((a, b) => latencyOf(state, a) - latencyOf(state, b));
    case 'weighted': {
      let pick = state.random() * group.totalWeight;
      let chosen = list[list.length - 1]!;
      for (const target of list) {
        pick -= target.weight;
        if (pick < 0) {
          chosen = target;
          break;
        }
      }
      return [chosen, ...list.filter((target) => target !== chosen)];
    }
  }
}

function planRoute(state: RouterState, request: RouteRequest): RoutePlan | undefined {
  const { config } = state;
  const requestClass = config.classes.get(request.model);
  const group = requestClass ? classifyRequest(requestClass, request) : config.groups.get(request.model);
  if (!group) return undefined;
  const order = orderTargets(state, group, request);
  // Healthy targets first, then those only the health checks hold down (the least bad), then the breakers' refusals,
  // each part in the strategy's order: an open breaker is tried only when its cooldown is over.
  // Every target healthy (the usual case): the order as it is, with no list built to find that out.
  const now = Date.now();
  let allHealthy = true;
  for (const target of order) {
    if (!callable(state, target, now)) {
      allHealthy = false;
      break;
    }
  }
  if (allHealthy) return { requestedModel: request.model, group, targets: order };
  const healthy = order.filter((target) => callable(state, target, now));
  const checkedDown = order.filter((target) => !healthy.includes(target) && callable(state, target, now, true));
  return {
    requestedModel: request.model,
    group,
    targets: [...healthy, ...checkedDown, ...order.filter((target) => !callable(state, target, now, true))],
  };
}

/**
 * The index of the next target to try from `from` on, going round the plan; a target the health checks hold down only
 * when no other is left (the least bad, rather than no answer); -1 when none is available.
 */
function nextTarget(
  state: RouterState,
  order: readonly ResolvedTarget[],
  from: number,
  excluded: ReadonlySet<ResolvedTarget> | undefined,
): number {
  const now = Date.now();
  for (const evenDown of state.checks ? [false, true] : [false]) {
    for (let step = 0; step < order.length; step++) {
      const index = (from + step) % order.length;
      const target = order[index]!;
      if (!excluded?.has(target) && callable(state, target, now, evenDown)) return index;
    }
  }
  return -1;
}

function note(
  state: RouterState,
  route: RoutePlan,
  type: RouterEvent['type'],
  target: ResolvedTarget,
  reason: string,
  delayMs?: number,
): void {
  state.onEvent?.({
    type,
    requestedModel: route.requestedModel,
    target: target.id,
    reason,
    ...(delayMs === undefined ? {} : { delayMs }),
  });
}

/**
 * No try left an answer to pass on: every target open (503, with when one may be tried), or none could take the
 * request (502, with why each was skipped).
 */
function exhaustedRoute(state: RouterState, route: RoutePlan, skipped: readonly string[] | undefined): RouteFailure {
  const openUntil = route.targets
    .map((target) => healthOf(state, target).retryAt())
    .filter((at): at is number => at !== undefined);
  if (openUntil.length === route.targets.length)
    return {
      status: 503,
      message: `Every target of "${route.requestedModel}" is failing (circuit breakers open); retry shortly.`,
      retryAfterMs: Math.max(0, Math.min(...openUntil) - Date.now()),
    };
  return {
    status: 502,
    message: `No target of "${route.requestedModel}" could take the request${skipped ? `: ${skipped.join('; ')}` : ''}.`,
  };
}

/** Runs the request's tries until one answers or none is left (see `ModelRouter.run`). */
async function runRoute(state: RouterState, route: RoutePlan, attempts: RouteAttempts): Promise<void> {
  const { retry } = state.config;
  const order = route.targets;
  let triesLeft = retry.attempts + 1;
  // What only a failure needs is made at the first failure: a first try that answers makes none of it.
  let triedCount: Map<ResolvedTarget, number> | undefined;
  let lastHint: Map<ResolvedTarget, number | undefined> | undefined;
  let excluded: Set<ResolvedTarget> | undefined;
  let skipped: string[] | undefined;
  let pending: (() => void) | undefined;
  let index = 0;
  try {
    while (triesLeft > 0) {
      if (attempts.gone?.()) return;
      index = nextTarget(state, order, index, excluded);
      if (index < 0) break;
      const target = order[index]!;
      const tried = triedCount?.get(target) ?? 0;
      if (tried === 0) {
        let unfit = attempts.prepare(target);
        // Awaited only when it is a promise (a re-pricing): an answer at hand costs no turn of the microtask queue.
        if (typeof unfit === 'object') unfit = await unfit;
        if (unfit !== undefined) {
          (excluded ??= new Set()).add(target);
          (skipped ??= []).push(`${target.id}: ${unfit}`);
          note(state, route, 'skipped', target, unfit);
          continue;
        }
      } else {
        // The same target again: wait first (its own hint, else full jitter). Another target goes at once.
        const delayMs = retryDelayMs(tried, retry.baseDelayMs, retry.maxDelayMs, lastHint?.get(target), state.random);
        note(state, route, 'retry', target, 'after a failure', delayMs);
        await wait(delayMs);
        if (attempts.gone?.()) return;
        // Switching back re-prices too: another target may have been prepared in between.
        const unfit = await attempts.prepare(target);
        if (unfit !== undefined) {
          (excluded ??= new Set()).add(target);
          note(state, route, 'skipped', target, unfit);
          continue;
        }
      }
      const outcome = await healthOf(state, target).guard(() => attempts.send(target));
      if (!outcome.ran) {
        // Opened (or probed) by a concurrent request since the plan: no try spent, the next target goes.
        (excluded ??= new Set()).add(target);
        (skipped ??= []).push(`${target.id}: circuit breaker open`);
        continue;
      }
      triesLeft--;
      const result = outcome.result;
      if (result.kind === 'answered') {
        pending = undefined;
        healthOf(state, target).noteFirstByte(result.firstByteMs);
        return;
      }
      (triedCount ??= new Map()).set(target, tried + 1);
      note(state, route, 'failed', target, result.reason);
      if (result.kind === 'failed') {
        pending = undefined;
        return;
      }
      pending = result.deliver;
      (lastHint ??= new Map()).set(target, result.retryAfterMs);
      // Round the plan: the next target if there is one, this one again if it is alone.
      index = (index + 1) % order.length;
    }
    if (attempts.gone?.()) return;
    if (pending) {
      const deliver = pending;
      pending = undefined;
      deliver();
      return;
    }
    attempts.fail(exhaustedRoute(state, route, skipped));
  } catch (error) {
    // A transport that throws is a bug of its own: the client still gets an answer, once.
    if (pending) pending();
    else
      attempts.fail({
        status: 502,
        message: `Routing "${route.requestedModel}" failed: ${error instanceof Error ? error.message : String(error)}`,
      });
  }
}

export function createModelRouter(setup: ModelRouterSetup = {}): ModelRouter {
  const { pricing, checks, onEvent, onBreakerOpen, random = Math.random, ...options } = setup;
  const config = resolveRouterOptions(options);
  const { health, targets } = trackTargets(config, pricing, onBreakerOpen);
  const state: RouterState = { config, health, pricing, checks, onEvent, random };
  return {
    config,
    targets,
    serves: (model) => config.groups.has(model) || config.classes.has(model),
    plan: (request) => planRoute(state, request),
    firstAvailable: (route) => {
      const index = nextTarget(state, route.targets, 0, undefined);
      return index < 0 ? undefined : route.targets[index];
    },
    run: (route, attempts) => runRoute(state, route, attempts),
    health: () => targets.map((target) => healthOf(state, target).report()),
  };
}
