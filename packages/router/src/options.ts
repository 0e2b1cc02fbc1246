// The router's options (what a user writes) and their resolution into a checked, fully-filled configuration.
import { TollgateError } from '@tollgate/core';

const STRATEGIES = ['fallback', 'cheapest', 'lowest-latency', 'weighted'] as const;
export type Strategy = (typeof STRATEGIES)[number];

export interface TargetOptions {
  /** The upstream that serves it: a name the caller's transport knows (the proxy: a key of `upstreams`). */
  upstream: string;
  /** The model name at that upstream. */
  model: string;
  /** Share of the traffic under the `weighted` strategy. @default 1 */
  weight?: number;
}

export interface ModelGroupOptions {
  /** How a target is chosen. @default 'fallback' */
  strategy?: Strategy;
  /** Tried in this order by `fallback`; at least one. */
  targets: TargetOptions[];
}

export interface RetryOptions {
  /** Tries after the first, across all targets of the request. @default 2 */
  attempts?: number;
  /** Cap of the first backoff; doubled per retry of the same target (full jitter: a random wait up to it). @default 250 */
  baseDelayMs?: number;
  /** Largest wait before a retry, `retry-after` hints included. @default 8000 */
  maxDelayMs?: number;
}

export interface CircuitBreakerOptions {
  /** Consecutive failures that open a target's breaker. @default 5 */
  failureThreshold?: number;
  /** Window over which the failure rate is measured. @default 30000 */
  windowMs?: number;
  /** Failure rate (0 to 1) over the window that opens the breaker, once the window saw `minimumCalls`. @default 0.5 */
  failureRate?: number;
  /** Calls the window needs before its failure rate counts. @default 10 */
  minimumCalls?: number;
  /** How long an open breaker refuses calls before it lets one probe through. @default 30000 */
  cooldownMs?: number;
}

/** One rule of a request class: every condition given must hold. */
export interface ClassRuleOptions {
  /** The caller asked for this class in the class header (`x-tollgate-class` by default). */
  header?: string;
  /** The estimated input is at least this many tokens. */
  minInputTokens?: number;
  /** The estimated input is at most this many tokens. */
  maxInputTokens?: number;
  /** The request does (true) or does not (false) carry tool definitions. */
  tools?: boolean;
  /** The request does (true) or does not (false) carry images. */
  images?: boolean;
  /** The request came on this route path (e.g. `/v1/messages`). */
  route?: string;
  /** The model group the request goes to when the rule matches. */
  group: string;
}

export interface RequestClassOptions {
  /** Tried in order; the first match names the group. */
  rules?: ClassRuleOptions[];
  /** The group when no rule matches. */
  default: string;
}

export interface ModelRouterOptions {
  /** Model names a client may ask for, each served by one or more targets. */
  modelGroups?: Record<string, ModelGroupOptions>;
  /** Model aliases (e.g. `auto`) that pick a group by what the request is. */
  requestClasses?: Record<string, RequestClassOptions>;
  /** The header a caller names its class in. @default 'x-tollgate-class' */
  classHeader?: string;
  retry?: RetryOptions;
  circuitBreaker?: CircuitBreakerOptions;
  /** Weight of the newest sample in the moving average of time to first byte (0 to 1). @default 0.2 */
  latencyAlpha?: number;
}

export interface ResolvedTarget {
  /** `upstream/model`: the breaker's and the latency average's key. */
  readonly id: string;
  readonly upstream: string;
  readonly model: string;
  readonly weight: number;
}

export interface ResolvedGroup {
  readonly name: string;
  readonly strategy: Strategy;
  readonly targets: readonly ResolvedTarget[];
  /** Sum of the weights, for `weighted`. */
  readonly totalWeight: number;
}

export interface ResolvedClassRule extends Omit<ClassRuleOptions, 'group'> {
  readonly group: ResolvedGroup;
}

export interface ResolvedRequestClass {
  readonly rules: readonly ResolvedClassRule[];
  readonly fallbackGroup: ResolvedGroup;
}

export interface RouterConfig {
  readonly groups: ReadonlyMap<string, ResolvedGroup>;
  readonly classes: ReadonlyMap<string, ResolvedRequestClass>;
  readonly classHeader: string;
  readonly retry: Required<RetryOptions>;
  readonly breaker: Required<CircuitBreakerOptions>;
  readonly latencyAlpha: number;
}

const CODE = 'ERR_TG_ROUTER_BAD_OPTION';

function fail(message: string): never {
  throw new TollgateError(CODE, message);
}

function positive(value: unknown, path: string, integer: boolean, allowZero = false): number {
  const ok =
    typeof value === 'number' &&
    Number.isFinite(value) &&
    (allowZero ? value >= 0 : value > 0) &&
    (!integer || Number.isInteger(value));
  if (!ok) fail(`${path} must be a ${allowZero ? 'non-negative' : 'positive'} ${integer ? 'integer' : 'number'}`);
  return value as number;
}

function knownFields(value: object, path: string, known: readonly string[]): void {
  for (const name of Object.keys(value))
    if (!known.includes(name)) fail(`${path}.${name} is not an option (known: ${known.join(', ')})`);
}

function resolveGroup(name: string, options: ModelGroupOptions): ResolvedGroup {
  const path = `modelGroups.${name}`;
  if (typeof options !== 'object' || options === null) fail(`${path} must be an object`);
  knownFields(options, path, ['strategy', 'targets']);
  const strategy = options.strategy ?? 'fallback';
  if (!STRATEGIES.includes(strategy)) fail(`${path}.strategy must be one of ${STRATEGIES.join(', ')}`);
  if (!Array.isArray(options.targets) || options.targets.length === 0)
    fail(`${path}.targets must be a non-empty array`);
  const seen = new Set<string>();
  const targets = options.targets.map((target, i): ResolvedTarget => {
    const at = `${path}.targets[${i}]`;
    if (typeof target !== 'object' || target === null) fail(`${at} must be an object`);
    knownFields(target, at, ['upstream', 'model', 'weight']);
    if (typeof target.upstream !== 'string' || target.upstream.length === 0)
      fail(`${at}.upstream must be a non-empty string`);
    if (typeof target.model !== 'string' || target.model.length === 0) fail(`${at}.model must be a non-empty string`);
    const weight = target.weight === undefined ? 1 : positive(target.weight, `${at}.weight`, false);
    const id = `${target.upstream}/${target.model}`;
    if (seen.has(id)) fail(`${at} repeats ${id}`);
    seen.add(id);
    return { id, upstream: target.upstream, model: target.model, weight };
  });
  return { name, strategy, targets, totalWeight: targets.reduce((sum, target) => sum + target.weight, 0) };
}

const RULE_FIELDS = ['header', 'minInputTokens', 'maxInputTokens', 'tools', 'images', 'route', 'group'] as const;

function resolveClass(
  name: string,
  options: RequestClassOptions,
  groups: ReadonlyMap<string, ResolvedGroup>,
): ResolvedRequestClass {
  const path = `requestClasses.${name}`;
  if (typeof options !== 'object' || options === null) fail(`${path} must be an object`);
  knownFields(options, path, ['rules', 'default']);
  if (groups.has(name)) fail(`${path}: "${name}" is already a model group`);
  const groupAt = (group: unknown, at: string): ResolvedGroup => {
    const found = typeof group === 'string' ? groups.get(group) : undefined;
    if (!found) fail(`${at} must name a model group (known: ${[...groups.keys()].join(', ') || 'none'})`);
    return found;
  };
  const rules = (options.rules ?? []).map((rule, i): ResolvedClassRule => {
    const at = `${path}.rules[${i}]`;
    if (typeof rule !== 'object' || rule === null) fail(`${at} must be an object`);
    knownFields(rule, at, RULE_FIELDS);
    if (rule.header !== undefined && (typeof rule.header !== 'string' || rule.header.length === 0))
      fail(`${at}.header must be a non-empty string`);
    if (rule.route !== undefined && (typeof rule.route !== 'string' || !rule.route.startsWith('/')))
      fail(`${at}.route must be a path starting with /`);
    for (const field of ['minInputTokens', 'maxInputTokens'] as const)
      if (rule[field] !== undefined) positive(rule[field], `${at}.${field}`, true, true);
    for (const field of ['tools', 'images'] as const)
      if (rule[field] !== undefined && typeof rule[field] !== 'boolean') fail(`${at}.${field} must be true or false`);
    if (Object.keys(rule).length === 1)
      fail(`${at} has no condition: give header, minInputTokens, maxInputTokens, tools, images or route`);
    const { group, ...conditions } = rule;
    return { ...conditions, group: groupAt(group, `${at}.group`) };
  });
  return { rules, fallbackGroup: groupAt(options.default, `${path}.default`) };
}

/** Checks the options once, at construction; every later read is of the resolved config. */
export function resolveRouterOptions(options: ModelRouterOptions = {}): RouterConfig {
  knownFields(options, 'router options', [
    'modelGroups',
    'requestClasses',
    'classHeader',
    'retry',
    'circuitBreaker',
    'latencyAlpha',
  ]);
  const groups = new Map<string, ResolvedGroup>();
  for (const [name, group] of Object.entries(options.modelGroups ?? {})) groups.set(name, resolveGroup(name, group));
  const classes = new Map<string, ResolvedRequestClass>();
  for (const [name, requestClass] of Object.entries(options.requestClasses ?? {}))
    classes.set(name, resolveClass(name, requestClass, groups));
  const retry = options.retry ?? {};
  knownFields(retry, 'retry', ['attempts', 'baseDelayMs', 'maxDelayMs']);
  const breaker = options.circuitBreaker ?? {};
  knownFields(breaker, 'circuitBreaker', ['failureThreshold', 'windowMs', 'failureRate', 'minimumCalls', 'cooldownMs']);
  const failureRate = breaker.failureRate ?? 0.5;
  if (!(typeof failureRate === 'number' && failureRate > 0 && failureRate <= 1))
    fail('circuitBreaker.failureRate must be a number above 0, at most 1');
  const latencyAlpha = options.latencyAlpha ?? 0.2;
  if (!(typeof latencyAlpha === 'number' && latencyAlpha > 0 && latencyAlpha <= 1))
    fail('latencyAlpha must be a number above 0, at most 1');
  const resolvedRetry = {
    attempts: retry.attempts === undefined ? 2 : positive(retry.attempts, 'retry.attempts', true, true),
    baseDelayMs: retry.baseDelayMs === undefined ? 250 : positive(retry.baseDelayMs, 'retry.baseDelayMs', true, true),
    maxDelayMs: retry.maxDelayMs === undefined ? 8000 : positive(retry.maxDelayMs, 'retry.maxDelayMs', true, true),
  };
  if (resolvedRetry.maxDelayMs < resolvedRetry.baseDelayMs) fail('retry.maxDelayMs must be at least retry.baseDelayMs');
  return {
    groups,
    classes,
    classHeader: (options.classHeader ?? 'x-tollgate-class').toLowerCase(),
    retry: resolvedRetry,
    breaker: {
      failureThreshold:
        breaker.failureThreshold === undefined
          ? 5
          : positive(breaker.failureThreshold, 'circuitBreaker.failureThreshold', true),
      windowMs: breaker.windowMs === undefined ? 30_000 : positive(breaker.windowMs, 'circuitBreaker.windowMs', true),
      failureRate,
      minimumCalls:
        breaker.minimumCalls === undefined ? 10 : positive(breaker.minimumCalls, 'circuitBreaker.minimumCalls', true),
      cooldownMs:
        breaker.cooldownMs === undefined ? 30_000 : positive(breaker.cooldownMs, 'circuitBreaker.cooldownMs', true),
    },
    latencyAlpha,
  };
}
