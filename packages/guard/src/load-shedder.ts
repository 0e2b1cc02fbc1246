// loadShedder: when this process is saturated, lower tiers are refused first so that paid tiers keep their service.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import {
  ApiError,
  parseDuration,
  renderApiError,
  TollgateError,
  type ErrorRenderer,
  type Identity,
} from '@tollgate/core';
import { assertKnownOptions } from '@tollgate/core/options';

export interface LoadShedderOptions {
  /**
   * Priority per tier (`identity.tier`): the lowest are shed first, the highest never.
   * @default every tier alike: nothing is shed but past `maxConcurrency`
   */
  priorities?: Record<string, number>;
  /** Priority of callers with no tier or an unlisted one. @default 0 */
  defaultPriority?: number;
  /** Requests in flight in this process at which it counts as saturated. @default no limit */
  maxConcurrency?: number;
  /** Event-loop delay (p99 over the last interval) at which the process counts as saturated. Ms or `"100ms"`. @default '100ms' */
  maxEventLoopDelay?: number | string;
  /** Share (0-1) of answers that were upstream failures (502, 504) at which the upstreams count as saturated. @default off */
  maxUpstreamErrorRate?: number;
  /** How often the load is judged. @default '500ms' */
  interval?: number | string;
  /** `Retry-After` of a shed request, in seconds. @default 2 */
  retryAfter?: number;
  /** Renders the 503. @default core renderApiError */
  renderError?: ErrorRenderer;
}

export interface LoadShedder {
  (req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void): void;
  /** How many priority classes are shed now (0: none). */
  readonly level: number;
  /** Stops the event-loop monitor and the timer. */
  close(): void;
}

const OPTION_NAMES = [
  'priorities',
  'defaultPriority',
  'maxConcurrency',
  'maxEventLoopDelay',
  'maxUpstreamErrorRate',
  'interval',
  'retryAfter',
  'renderError',
] as const;
const CODE = 'ERR_TG_GUARD_INVALID_OPTION';
/** Load must stay below this share of every limit for CALM_INTERVALS judgements in a row before shedding eases by a class (no flapping). */
const EASE_BELOW = 0.8;
const CALM_INTERVALS = 4;
/** Upstream error rates are judged only over at least this many answers. */
const MIN_ANSWERS = 20;

function duration(value: number | string, what: string): number {
  try {
    return parseDuration(value, `loadShedder ${what}`);
  } catch (error) {
    throw new TollgateError(CODE, (error as Error).message.replace(/ \(ERR_.*$/, ''), { cause: error });
  }
}

/**
 * Express middleware for after authentication. Every `interval` it judges the process's load:
 * requests in flight, the event loop's delay, the upstreams' error rate. While any is over its
 * limit, one more priority class is shed per interval, lowest first (never the highest); once all
 * have stayed under 80% of their limits for four intervals in a row, one class fewer. A shed request gets 503 `service_unavailable`
 * with `Retry-After`. Past `maxConcurrency`, every class but the highest is shed at once.
 * Saturation is this process's own: each process sheds for itself.
 */
export function loadShedder(options: LoadShedderOptions = {}): LoadShedder {
  assertKnownOptions(options, OPTION_NAMES, 'ERR_TG_GUARD_UNKNOWN_OPTION', 'loadShedder');
  const priorities = new Map(Object.entries(options.priorities ?? {}));
  for (const [tier, priority] of priorities)
    if (typeof priority !== 'number' || !Number.isFinite(priority))
      throw new TollgateError(CODE, `loadShedder priorities.${tier} must be a number`);
  const defaultPriority = options.defaultPriority ?? 0;
  const classes = [...new Set([...priorities.values(), defaultPriority])].sort((a, b) => a - b);
  const classOf = new Map(classes.map((priority, index) => [priority, index]));
  const top = classes.length - 1;
  const maxConcurrency = options.maxConcurrency ?? Infinity;
  if (!(maxConcurrency > 0)) throw new TollgateError(CODE, 'loadShedder maxConcurrency must be a positive number');
  const maxDelayMs = duration(options.maxEventLoopDelay ?? '100ms', 'maxEventLoopDelay');
  const maxErrorRate = options.maxUpstreamErrorRate ?? Infinity;
  if (!(maxErrorRate > 0)) throw new TollgateError(CODE, 'loadShedder maxUpstreamErrorRate must be between 0 and 1');
  const intervalMs = duration(options.interval ?? '500ms', 'interval');
  const retryAfter = options.retryAfter ?? 2;
  const render = options.renderError ?? renderApiError;

  let inFlight = 0;
  let answers = 0;
  let upstreamFailures = 0;
  let level = 0;
  let calm = 0;
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();

  function judge(): void {
    const delayMs = delay.percentile(99) / 1e6;
    delay.reset();
    const errorRate = answers >= MIN_ANSWERS ? upstreamFailures / answers : 0;
    answers = 0;
    upstreamFailures = 0;
    const load = Math.max(inFlight / maxConcurrency, delayMs / maxDelayMs, errorRate / maxErrorRate);
    if (load >= 1) {
      level = Math.min(top, level + 1);
      calm = 0;
    } else if (load < EASE_BELOW && ++calm >= CALM_INTERVALS) {
      level = Math.max(0, level - 1);
      calm = 0;
    } else if (load >= EASE_BELOW) {
      calm = 0;
    }
  }
  const timer = setInterval(judge, intervalMs);
  // Judging the load must never keep a process alive.
  timer.unref();

  // One shared listener (no closure per request): `this` is the response.
  function settle(this: ServerResponse): void {
    inFlight--;
    answers++;
    if (this.statusCode === 502 || this.statusCode === 504) upstreamFailures++;
  }

  const shed = (req: IncomingMessage, res: ServerResponse, tier: string | undefined) =>
    render(
      new ApiError(
        'service_unavailable',
        `The gateway is overloaded and serves higher tiers first${tier ? ` (this key's tier: ${tier})` : ''}. Retry in ${retryAfter}s.`,
        { headers: { 'Retry-After': retryAfter } },
      ),
      req,
      res,
    );

  const middleware = function tollgateLoadShedder(
    req: IncomingMessage,
    res: ServerResponse,
    next: (error?: unknown) => void,
  ): void {
    const tier = (req as IncomingMessage & { tollgate?: { identity?: Identity } }).tollgate?.identity?.tier;
    const priority = (tier === undefined ? undefined : priorities.get(tier)) ?? defaultPriority;
    const rank = classOf.get(priority)!;
    if (rank < top && (rank < level || inFlight >= maxConcurrency)) return shed(req, res, tier);
    inFlight++;
    res.once('close', settle);
    next();
  } as LoadShedder;
  Object.defineProperty(middleware, 'level', { get: () => level });
  middleware.close = () => {
    clearInterval(timer);
    delay.disable();
  };
  return middleware;
}
