// The guard from the config (`guard`, `alerts`, `guardrails`): its pieces in the proxy's chain, and budget and store events in its alert stream.
import type { Request, RequestHandler, Router } from 'express';
import { createClient } from 'redis';
import { refusalRenderer } from '@tollgate/core';
import type { ApiError, ErrorRenderer, TollgateStores, UsageRecord } from '@tollgate/core';
import {
  bodyAfterAuth,
  breakerOpenAlerts,
  budgetAlerts,
  createGuard,
  guardAdminRouter,
  loadShedder,
  promptGuardrails,
  storeDownAlerts,
} from '@tollgate/guard';
import type {
  Alerts,
  BudgetEventNotice,
  Guard,
  GuardEvent,
  LoadShedder,
  Mitigation,
  PromptGuardrailsOptions,
  WebhookOptions,
} from '@tollgate/guard';
import { ConfigError } from './config/index.js';
import type { ProxyConfig } from './config/index.js';
import type { ProxyMetrics } from './proxy-metrics.js';

/** What the budget guard takes from the alert stream (see budget-setup.ts). */
export interface BudgetAlertHooks {
  /** `budget.threshold` and `budget.exhausted`, each once per budget (and threshold) and period. */
  onEvent: (notice: BudgetEventNotice) => void;
  renderError: ErrorRenderer;
}

export interface ProxyGuard {
  /** Before auth: a blocked address is refused, and the 401s of the others are counted per address. */
  readonly beforeAuth: RequestHandler[];
  /** Right after auth: shedding of lower tiers when the process is saturated, then the body, read only now and under a deadline. */
  afterAuth(parseBody: RequestHandler): RequestHandler[];
  /** After the estimate: suspended keys and tenants are refused (no I/O). */
  readonly afterEstimate: RequestHandler[];
  /** Inside combineLimits: the repeat count joins the limits' and the budget's one store call. */
  readonly limitChecks: RequestHandler[];
  /** The factor a throttle puts on the caller's request and token limits (1 when none). */
  readonly limitScale: ((req: Request) => number) | undefined;
  /** The meter's usage feed: spend, tokens, requests and addresses per key and tenant. */
  readonly onUsage: ((record: UsageRecord, req: Request) => void) | undefined;
  /** Budget events in the alert stream; undefined without a guard or alerts in the config. */
  readonly budgetHooks: BudgetAlertHooks | undefined;
  /** A middleware's store-failure handler that also sends a `store_down` event. */
  alertStoreDown(layer: string, report: (error: unknown) => void): (error: unknown) => void;
  /** A routing target's circuit breaker opened: a `breaker_open` event (once per period across processes). */
  breakerOpen(target: string, reason: string | undefined): void;
  /** Resolves once the suspensions, throttles and blocks in force are loaded (a restarted process enforces them from its first request). */
  readonly ready: Promise<void>;
  /** `/admin/guard`: anomalies, mitigations in force, suspend and lift (mounted behind the admin key). */
  readonly adminRouter: Router | undefined;
  /** The mitigations in force as this process knows them (none without a guard): the metrics count them. */
  mitigations(): readonly Mitigation[];
  close(): Promise<void>;
}

export interface ProxyGuardDeps {
  stores: TollgateStores;
  /** Where upstream keys and webhook secrets are read from. */
  env: NodeJS.ProcessEnv;
  /** The operator log: each alert is one JSON line there. */
  log: (line: string) => void;
}

/** The Redis URL the stores were opened on, as main.ts chooses it: the environment first, then the config. */
function redisUrlOf(config: ProxyConfig, env: NodeJS.ProcessEnv): string | undefined {
  return env.REDIS_URL || config.redisUrl || config.redis?.cluster?.[0];
}

/** The config's webhooks with their secrets read from `env` (the same place as the upstream keys), so a missing one stops the start. */
function webhooksOf(config: ProxyConfig, env: NodeJS.ProcessEnv): WebhookOptions[] {
  return (config.alerts?.webhooks ?? []).map((hook, i) => {
    let secret: string | undefined;
    if (hook.secretEnv !== undefined) {
      secret = env[hook.secretEnv];
      if (!secret)
        throw new ConfigError(
          `alerts.webhooks[${i}].secretEnv names ${hook.secretEnv}, which is not set in the environment`,
        );
    }
    return { url: hook.url, format: hook.format ?? 'json', ...(secret ? { secret } : {}) };
  });
}

/** Renders the budget's refusals as before; a ledger that failed also becomes an event (a spent budget is the budget's own event). */
function budgetRenderer(alerts: Alerts): ErrorRenderer {
  const render = refusalRenderer('budget');
  const storeDown = storeDownAlerts(alerts, 'budget');
  return function renderBudgetRefusal(error: ApiError, req, res) {
    render(error, req, res);
    if (error.code === 'service_unavailable') storeDown(error.cause ?? error);
  };
}

const NO_GUARD: Omit<ProxyGuard, 'afterAuth'> = {
  beforeAuth: [],
  afterEstimate: [],
  limitChecks: [],
  limitScale: undefined,
  onUsage: undefined,
  budgetHooks: undefined,
  alertStoreDown: (_layer, report) => report,
  breakerOpen: () => undefined,
  ready: Promise.resolve(),
  adminRouter: undefined,
  mitigations: () => [],
  close: async () => undefined,
};

/**
 * Builds the guard the config asks for. Each `guard` section turns its check on; with `alerts` and
 * no `guard`, the guard runs only its alert stream (budget and store events, once across processes).
 * Bodies are read after auth, under `guard.bodyTimeout`, whether or not a guard is configured.
 */
export function createProxyGuard(config: ProxyConfig, deps: ProxyGuardDeps): ProxyGuard {
  const settings = config.guard ?? {};
  const bodyTimeout = settings.bodyTimeout ?? '10s';
  // Before anything with a timer: a missing secret stops the start here.
  const webhooks = webhooksOf(config, deps.env);
  // A shed request is the guard's refusal in the access log and the metrics, not a store's.
  const shedder: LoadShedder | undefined = settings.shedding
    ? loadShedder({ ...settings.shedding, renderError: refusalRenderer('guard') })
    : undefined;
  const afterAuth = (parseBody: RequestHandler): RequestHandler[] => [
    ...(shedder ? [shedder as RequestHandler] : []),
    bodyAfterAuth(parseBody as Parameters<typeof bodyAfterAuth>[0], { timeout: bodyTimeout }) as RequestHandler,
  ];
  if (config.guard === undefined && config.alerts === undefined) {
    return { ...NO_GUARD, afterAuth, close: async () => shedder?.close() };
  }

  const redisUrl = deps.stores.kind === 'redis' ? redisUrlOf(config, deps.env) : undefined;
  const guard: Guard = createGuard({
    stores: deps.stores,
    // Suspensions and blocks reach every process on pub/sub at once; without it, within the 1 s sync.
    ...(redisUrl ? { subscriber: createClient({ url: redisUrl, name: 'tollgate-guard' }) } : {}),
    spendAnomaly: settings.spendAnomaly ?? false,
    repeatedRequests: settings.repeatedRequests ?? false,
    authFailures: settings.authFailures ?? false,
    alerts: {
      webhooks,
      log: (event: GuardEvent) => deps.log(JSON.stringify({ msg: 'tollgate alert', ...event })),
    },
  });
  const { alerts } = guard;
  return {
    beforeAuth: settings.authFailures ? [guard.authFailures as RequestHandler] : [],
    afterAuth,
    afterEstimate: [guard.suspensions as RequestHandler],
    limitChecks: settings.repeatedRequests ? [guard.repeatedRequests as RequestHandler] : [],
    limitScale: (req) => guard.limitScale(req.tollgate.identity),
    onUsage: settings.spendAnomaly ? guard.onUsage : undefined,
    budgetHooks: { onEvent: budgetAlerts(alerts), renderError: budgetRenderer(alerts) },
    alertStoreDown(layer, report) {
      const storeDown = storeDownAlerts(alerts, layer);
      return function reportAndAlertStoreDown(error) {
        report(error);
        storeDown(error);
      };
    },
    breakerOpen: (() => {
      const alert = breakerOpenAlerts(alerts);
      return (target: string, reason: string | undefined) =>
        alert(target, reason === undefined ? undefined : { reason });
    })(),
    ready: guard.ready,
    adminRouter: guardAdminRouter(guard),
    mitigations: () => guard.mitigations(),
    async close() {
      shedder?.close();
      await guard.close();
    },
  };
}

/**
 * The config's `guardrails` (with `hooks`, the code a config cannot hold) on every provider route, right after the
 * scope and tier rules (before the cache, the estimate, the limits and the budget): what they mask and refuse is
 * counted in `metrics`. None without either.
 */
export function createProxyGuardrails(
  config: ProxyConfig,
  metrics: ProxyMetrics | undefined,
  hooks: Pick<PromptGuardrailsOptions, 'check' | 'checkTimeout' | 'onAnswerText'> | undefined,
): RequestHandler[] {
  if (config.guardrails === undefined && hooks === undefined) return [];
  return [
    promptGuardrails({
      ...config.guardrails,
      ...hooks,
      ...(metrics
        ? {
            onMasked: (kind, count) => metrics.guardrailMasked(kind, count),
            onRefused: (rule) => metrics.guardrailRefused(rule),
          }
        : {}),
    }) as RequestHandler,
  ];
}
