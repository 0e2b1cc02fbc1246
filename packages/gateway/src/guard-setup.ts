// The guard (its checks, alerts, prompt guardrails): its pieces in the proxy's chain, and budget and store events in
// its alert stream.
import type { NextFunction, Request, RequestHandler, Response, Router } from 'express';
import type { createClient } from '@redis/client';
import type { GatewayMetrics } from '@tollgate/metering/prometheus';
import { refusalRenderer } from '@tollgate/core';
import { loadOnDemand } from '@tollgate/core/options';
import type { ApiError, ErrorRenderer, TollgateStores, UsageRecord } from '@tollgate/core';
import type { AuditEntry } from '@tollgate/core/audit';
import {
  abuseAdminRouter,
  breakerOpenAlerts,
  budgetAlerts,
  createGuard,
  guardAdminRouter,
  loadShedder,
  storeDownAlerts,
} from '@tollgate/guard';
import type {
  Alerts,
  BudgetEventNotice,
  Guard,
  GuardEvent,
  GuardOptions,
  LoadShedder,
  LoadShedderOptions,
  Mitigation,
  PromptGuardrailsOptions,
  WebhookOptions,
} from '@tollgate/guard';

/** What the budget guard takes from the alert stream (see budget-setup.ts). */
export interface BudgetAlertHooks {
  /** `budget.threshold`, `budget.exhausted` and `budget.forecast`, each once per budget (and threshold) and period. */
  onEvent: (notice: BudgetEventNotice) => void;
  renderError: ErrorRenderer;
}

export interface GatewayGuard {
  /**
   * Before auth: a blocked address is refused, and the 401s of the others are counted per address; a request with the
   * operator's valid credential passes first (`GatewayGuardDeps.isOperator`), whatever its address.
   */
  readonly guardAdmit: RequestHandler[];
  /** Right after auth, before the body is read: lower tiers shed when the process is saturated. */
  readonly shedder: RequestHandler | undefined;
  /** How long a body may take to arrive once the caller is known; undefined without a guard (no deadline). */
  readonly bodyTimeout: number | string | undefined;
  /** After the estimate: suspended keys and tenants are refused (no I/O). */
  readonly guardAfterEstimate: RequestHandler[];
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
  /** `/admin/abuse`: the abuse model's scores and actions, and clears (with `guard.abuse` only). */
  readonly abuseRouter: Router | undefined;
  /** The abuse model's latest scoring, highest first (with `guard.abuse` only): the dashboard's Abuse page. */
  readonly abuseEntries: Guard['abuseEntries'] | undefined;
  /** An admin write's audit entry as an `audit.event` on the alert stream; undefined without a guard. */
  readonly auditEvent: ((entry: AuditEntry) => void) | undefined;
  /** The mitigations in force as this process knows them (none without a guard): the metrics count them. */
  mitigations(): readonly Mitigation[];
  close(): Promise<void>;
}

/** The guard's checks and where its alerts go. */
export interface GuardSetupOptions {
  /** Whether a guard runs at all (its checks, or only its alert stream): else only the body deadline and shedding. */
  enabled: boolean;
  spendAnomaly: NonNullable<GuardOptions['spendAnomaly']>;
  repeatedRequests: NonNullable<GuardOptions['repeatedRequests']>;
  authFailures: NonNullable<GuardOptions['authFailures']>;
  abuse: NonNullable<GuardOptions['abuse']>;
  /** Lower tiers get 503 first when the process is saturated. */
  shedding?: Omit<LoadShedderOptions, 'renderError'> | undefined;
  /** How long a provider route's body may take to arrive once the caller is identified: ms or "10s". */
  bodyTimeout: number | string;
  /** Where each alert is POSTed (their secrets read already). */
  webhooks: WebhookOptions[];
  /** The Redis the stores were opened on, for the guard's pub/sub (used on Redis stores only). */
  redisUrl?: string | undefined;
}

/** The prompt checks a config can hold (promptGuardrails' rules). */
export type GuardrailRules = Pick<PromptGuardrailsOptions, 'maxPromptChars' | 'deny' | 'pii'>;

interface GatewayGuardDeps {
  stores: TollgateStores;
  /** The operator log: each alert is one JSON line there. */
  log: (line: string) => void;
  /**
   * Whether a request carries the operator's valid credential (the admin key): such a request is never refused by an
   * address block, an abuse action or an auth-failure limit, so the operator can always reach the routes that clear
   * them (an operator's OIDC session too, which is read asynchronously). Every other request, a wrong admin key
   * included, meets them as before. @default nobody
   */
  isOperator?: ((req: Request) => boolean | Promise<boolean>) | undefined;
}

/**
 * The guard's checks before auth as one stage, behind the one question that passes them: the operator's credential.
 * The checks run in their order for everyone else. The credential is hashed only while the checks may refuse
 * (`mayRefuse`: a block or throttle known), so the usual request pays nothing for it.
 */
function admitOperatorFirst(
  checks: RequestHandler[],
  mayRefuse: () => boolean,
  isOperator: GatewayGuardDeps['isOperator'],
): RequestHandler[] {
  if (checks.length === 0 || isOperator === undefined) return checks;
  return [
    function tollgateGuardAdmit(req, res, next) {
      if (!mayRefuse()) return runChecks(checks, req, res, next);
      const operator = isOperator(req);
      if (operator === true) return next();
      if (operator === false) return runChecks(checks, req, res, next);
      operator.then((admitted) => (admitted ? next() : runChecks(checks, req, res, next)), next);
    },
  ];
}

function runChecks(checks: RequestHandler[], req: Request, res: Response, next: NextFunction): void {
  let index = 0;
  const step = (error?: unknown): void => {
    if (error !== undefined) return next(error);
    const check = checks[index++];
    if (check === undefined) return next();
    check(req, res, step);
  };
  step();
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

const NO_GUARD: GatewayGuard = {
  guardAdmit: [],
  shedder: undefined,
  bodyTimeout: undefined,
  guardAfterEstimate: [],
  limitChecks: [],
  limitScale: undefined,
  onUsage: undefined,
  budgetHooks: undefined,
  alertStoreDown: (_layer, report) => report,
  breakerOpen: () => undefined,
  ready: Promise.resolve(),
  adminRouter: undefined,
  abuseRouter: undefined,
  abuseEntries: undefined,
  auditEvent: undefined,
  mitigations: () => [],
  close: async () => undefined,
};

/** No guard at all: the body read right after auth, nothing refused before it or after the estimate. */
export function noGatewayGuard(): GatewayGuard {
  return NO_GUARD;
}

/**
 * Builds the guard the options ask for. Each check given turns on; enabled with none, the guard runs only its alert
 * stream (budget and store events, once across processes). Bodies are read after auth, under `bodyTimeout`, whether
 * or not a guard is enabled.
 */
export function createGatewayGuard(settings: GuardSetupOptions, deps: GatewayGuardDeps): GatewayGuard {
  const { bodyTimeout, webhooks } = settings;
  // A shed request is the guard's refusal in the access log and the metrics, not a store's.
  const shedder: LoadShedder | undefined = settings.shedding
    ? loadShedder({ ...settings.shedding, renderError: refusalRenderer('guard') })
    : undefined;
  const bodyRead = { shedder, bodyTimeout };
  if (!settings.enabled) return { ...NO_GUARD, ...bodyRead, close: async () => shedder?.close() };

  const redisUrl = deps.stores.kind === 'redis' ? settings.redisUrl : undefined;
  // Redis's client loads only with Redis stores, which loaded it already (a gateway on memory never does).
  const redisClient = (url: string) =>
    loadOnDemand<{ createClient: typeof createClient }>(import.meta.url, '@redis/client').createClient({
      url,
      name: 'tollgate-guard',
    });
  const guard: Guard = createGuard({
    stores: deps.stores,
    // Suspensions and blocks reach every process on pub/sub at once; without it, within the 1 s sync.
    ...(redisUrl ? { subscriber: redisClient(redisUrl) } : {}),
    spendAnomaly: settings.spendAnomaly,
    repeatedRequests: settings.repeatedRequests,
    authFailures: settings.authFailures,
    abuse: settings.abuse,
    alerts: {
      webhooks,
      log: (event: GuardEvent) => deps.log(JSON.stringify({ msg: 'tollgate alert', ...event })),
    },
  });
  const { alerts } = guard;
  return {
    // The abuse checks first: an address the model blocked is answered 403 abuse_blocked, not as an auth flood.
    guardAdmit: admitOperatorFirst(
      [...(settings.abuse ? [guard.abuseBeforeAuth] : []), ...(settings.authFailures ? [guard.authFailures] : [])],
      () => guard.refusesBeforeAuth(),
      deps.isOperator,
    ),
    ...bodyRead,
    guardAfterEstimate: [guard.suspensions, ...(settings.abuse ? [guard.abuseAfterAuth] : [])],
    limitChecks: settings.repeatedRequests ? [guard.repeatedRequests] : [],
    limitScale: (req) => guard.limitScale(req.tollgate.identity),
    onUsage: settings.spendAnomaly || settings.abuse ? guard.onUsage : undefined,
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
    abuseRouter: settings.abuse ? abuseAdminRouter(guard) : undefined,
    abuseEntries: settings.abuse ? () => guard.abuseEntries() : undefined,
    auditEvent: (entry) =>
      alerts.emit({
        type: 'audit.event',
        id: `audit:${entry.id}`,
        at: entry.finishedAt ?? entry.at,
        message: `${entry.actor} (${entry.role}) ${entry.action} ${entry.target}: ${entry.outcome}`,
        details: { ...entry },
      }),
    mitigations: () => guard.mitigations(),
    async close() {
      shedder?.close();
      await guard.close();
    },
  };
}

/**
 * The prompt guardrails' `rules` (with `hooks`, the code a config cannot hold) as promptGuardrails takes them, for every
 * provider route, right after the scope and tier rules (before the cache, the estimate, the limits and the budget):
 * what they mask and refuse is counted in `metrics`. None without either.
 */
export function guardrailOptions(
  rules: GuardrailRules | undefined,
  metrics: GatewayMetrics | undefined,
  hooks: Pick<PromptGuardrailsOptions, 'check' | 'checkTimeout' | 'onAnswerText'> | undefined,
): PromptGuardrailsOptions | undefined {
  if (rules === undefined && hooks === undefined) return undefined;
  return {
    ...rules,
    ...hooks,
    ...(metrics
      ? {
          onMasked: (kind, count) => metrics.guardrailMasked(kind, count),
          onRefused: (rule) => metrics.guardrailRefused(rule),
        }
      : {}),
  };
}
