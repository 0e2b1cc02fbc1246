// The gateway's parts, made once from each part's options in the order their dependencies ask (stores, the guard, the
// meter, the upstreams, the budget), and what closes them, in the order their work drains.
import { resolve } from 'node:path';
import type { RequestHandler } from 'express';
import type { Logger } from 'pino';
import type { Tracer } from '@opentelemetry/api';
import type { createClient } from '@redis/client';
import { keyRecordsFromConfig } from '@tollgate/auth';
import { createMemoryStores, createPricing } from '@tollgate/core';
import type { Pricing, TollgateStores } from '@tollgate/core';
import type { AuditStore, AuditTrail } from '@tollgate/core/audit';
import type { PriceRefresh } from '@tollgate/core/costs';
import { loadOnDemand } from '@tollgate/core/options';
import { RETIRE_WAIT_MS } from '@tollgate/core/store-contracts';
import type { McpGatewayOptions } from '@tollgate/mcp';
import type { ConfigKeyEntry } from '@tollgate/auth';
import type { PromptGuardrailsOptions } from '@tollgate/guard';
import { migrateUsageLedger, serveLedger } from '@tollgate/metering';
import { memoryTenantTable, postgresTenantTable } from '@tollgate/metering/postgres';
import { createGatewayLog } from '@tollgate/metering/log';
import type { GatewayLog } from '@tollgate/metering/log';
import { createGatewayMetrics } from '@tollgate/metering/prometheus';
import { createMockProvider } from '@tollgate/providers/mock';
import type { MockProvider } from '@tollgate/providers/mock';
import { createOperatorAdmission, isOperatorRequest } from './admin-auth.js';
import type { OperatorAdmission } from './admin-auth.js';
import { createAuditTrail, priceLoadChange } from './audit-setup.js';
import type { TenantOptions } from './admin-tenants-router.js';
import { TenantDirectory } from './tenant-directory.js';
import type { TenantChanges } from './tenant-directory.js';
import { createKeyLookup } from './auth-setup.js';
import type { AuthOptions } from './auth-setup.js';
import type { BudgetOptions } from './budget-setup.js';
import type { BatchBook } from './batch/batch-book.js';
import type { CacheSetupOptions } from './cache-setup.js';
import { ConfigError } from './config/error.js';
import type { GuardrailRules, GuardSetupOptions } from './guard-setup.js';
import type { LimitOptions } from './limits-setup.js';
import type { MeteringOptions } from './metering-setup.js';
import type { ModelListOptions } from './models-route.js';
import type { OperatorOptions } from './operator-options.js';
import type { SpendOptions } from './spend-rebuild.js';
import { createBudgetGuard } from './budget-setup.js';
import { createGatewayCache } from './cache-setup.js';
import { createConfigFileStates } from './config-file-state.js';
import type { ConfigFileStates } from './config-file-state.js';
import { holdDataDir, keysKeptIn, writeKeyNames } from './data-dir.js';
import { createGatewayGuard } from './guard-setup.js';
import type { StoreFailureHandlers } from './limits-setup.js';
import { createMetering } from './metering-setup.js';
import { blockedStores, outageStores } from './outage-setup.js';
import type { BlocksSetting, StoreOutageConfig } from './outage-setup.js';
import { createProviderRouter } from '@tollgate/router/upstreams';
import { registerRoutingMetrics } from './routing-metrics.js';
import { registerHealthMetrics } from './health-metrics.js';
import { keepSpend } from './spend-rebuild.js';
import type { SpendKeeper } from './spend-rebuild.js';
import { storeFailureReporter } from './store-failure-log.js';

export interface GatewayDeps {
  /** Shared stores; the caller keeps ownership. @default in-memory stores owned (and closed) by the app */
  stores?: TollgateStores;
  /** The mock served when the config has no `upstreams`. @default a fresh createMockProvider() */
  mock?: MockProvider;
  /** Where upstream keys are read from. @default process.env */
  env?: NodeJS.ProcessEnv;
  /** Where Batch files and jobs are kept (docs/batch.md). @default memoryBatchBook(): one process */
  batchBook?: BatchBook;
  /** How often jobs nobody polls are asked about upstream and settled when finished. @default 5 minutes */
  batchSweepMs?: number;
  /** Operator log lines (never secrets). @default console.error */
  log?: (line: string) => void;
  /**
   * The access and error log (pino): one line per request, upstream and store failures at error
   * level. The caller keeps ownership. @default pino as the config's `log` says (info, to stderr)
   */
  logger?: Logger;
  /**
   * Prometheus metrics: the usage sink's and the proxy's (responses, refusals, upstream calls,
   * store calls, budgets) at `GET /metrics`. `false` leaves them all out. @default true
   */
  metrics?: boolean;
  /**
   * Times each store call for `tollgate_store_call_duration_seconds` (with metrics on). Memory stores answer
   * in well under a microsecond, less than timing them costs (bench/RESULTS.md §14): they are not timed.
   * @default true for remote stores (Redis), false for memory stores (`stores.kind === 'memory'`)
   */
  timeStoreCalls?: boolean;
  /**
   * Where the span of each provider call goes (OpenTelemetry GenAI conventions); `false` makes none.
   * @default the global tracer provider's: a no-op until an SDK registers one (`pnpm start` does when OTEL_* variables ask)
   */
  tracer?: Tracer | false;
  /**
   * What the config cannot hold, for the prompt guardrails (`promptGuardrails` of @tollgate/guard): a team's own
   * prompt `check` (with its `checkTimeout`) and the `onAnswerText` hook. Given, the guardrails run on every provider
   * route, with the config's `guardrails` rules or none. @default none
   */
  guardrails?: Pick<PromptGuardrailsOptions, 'check' | 'checkTimeout' | 'onAnswerText'>;
  /**
   * Where the audit trail of admin writes is kept (docs/audit.md). @default the ledger's database (PostgreSQL or the
   * embedded PGlite), else this process's memory
   */
  audit?: AuditStore;
}

/**
 * The stores as each part uses them: timed for the metrics (the middlewares; the app's own checks, health and the
 * spend marker, use the stores themselves), and, for the limits and the budget, behind a lease (or failOpen) when the
 * config says what to do while Redis is out, and in blocks on Redis.
 */
function layeredStores(
  options: Pick<GatewayOptions, 'storeOutage' | 'blocks'>,
  stores: TollgateStores,
  metrics: ReturnType<typeof createGatewayMetrics> | undefined,
  deps: GatewayDeps,
  log: (line: string) => void,
) {
  const timeStoreCalls = deps.timeStoreCalls ?? stores.kind !== 'memory';
  const observedStores = metrics && timeStoreCalls ? metrics.timeStores(stores) : stores;
  const leased = outageStores(options.storeOutage, observedStores, log);
  const blocked = blockedStores(options.blocks, leased ?? observedStores);
  return { observedStores, leased, blocked, limitStores: blocked ?? leased ?? observedStores };
}

type LogOptions = NonNullable<Parameters<typeof createGatewayLog>[0]>;

/** The config's log; a destination it cannot open stops the start as the config's error (metering knows no config). */
function openGatewayLog(options: LogOptions | undefined, log: (line: string) => void): GatewayLog {
  try {
    return createGatewayLog(options, log);
  } catch (error) {
    throw new ConfigError(error instanceof Error ? error.message : String(error));
  }
}

/** What the gateway holds first and lets go of last: its log, its data directory, its stores. */
function heldParts(options: GatewayOptions, deps: GatewayDeps) {
  const log = deps.log ?? ((line: string) => console.error(line));
  const proxyLog: GatewayLog = deps.logger
    ? { logger: deps.logger, flush: async () => undefined, close: async () => undefined }
    : openGatewayLog(options.log, log);
  const { logger } = proxyLog;
  const logging = logger.level !== 'silent';
  // Held first, released last: the ledger in it opens in one process at a time.
  const dataDir = options.dataDir === undefined ? undefined : holdDataDir(options.dataDir);
  // What keys written to its keys.json may name, for `tollgate keys` to check them as this gateway does.
  if (dataDir) writeKeyNames(dataDir.dir, options.keyNames);
  const configFiles = createConfigFileStates({
    error: (line) => (logging ? logger.error(line) : log(line)),
    info: (line) => (logging ? logger.info(line) : log(line)),
  });
  const kept = dataDir && keysKeptIn(dataDir, deps.stores ?? (createMemoryStores() as TollgateStores), configFiles);
  const stores: TollgateStores = kept ? kept.stores : (deps.stores ?? createMemoryStores());
  return { log, proxyLog, logger, logging, dataDir, configFiles, kept, stores, ownsStores: deps.stores === undefined };
}

type Held = ReturnType<typeof heldParts>;

/** The guard, the meter and the metrics: the guard learns spend from the meter's records, the metrics watch both. */
function watchingParts(options: GatewayOptions, deps: GatewayDeps, held: Held) {
  const { stores, log, logger, logging, configFiles } = held;
  // The guard sits at several points of the chain (docs/architecture.md); it learns spend from the meter's usage records.
  const admission = createOperatorAdmission(options.operator, stores);
  const guarding = createGatewayGuard(options.guard, {
    stores,
    log,
    ...(admission.judgeKey || admission.sessions ? { isOperator: isOperatorRequest(admission) } : {}),
  });
  const pricing = createPricing(options.pricing);
  const metering = createMetering(options.metering, pricing, {
    metrics: deps.metrics,
    tenants: options.operator.tenants,
    ...(deps.tracer === undefined ? {} : { tracer: deps.tracer }),
    ...(guarding.onUsage ? { onUsage: guarding.onUsage } : {}),
  });
  // Every admin write and config or price change goes through it (docs/audit.md).
  const audit = createAuditTrail({
    ...(deps.audit ? { store: deps.audit } : {}),
    ledger: metering.ledger,
    location: options.operator.ledgerTable,
    onEntry: guarding.auditEvent,
    log,
  });
  // The one table every part prices with: a price source's load swaps its layer for all of them at once.
  const prices: PriceRefresh = pricing.refreshFrom(options.prices, {
    info: (line) => (logging ? logger.info(line) : log(line)),
    error: (line) => (logging ? logger.error(line) : log(line)),
    loaded: (load) => {
      if (!load.first) void audit.recordChange(priceLoadChange(load));
    },
  });
  const metrics =
    metering.registry &&
    createGatewayMetrics(metering.registry, {
      report: (error) => logger.error({ err: error }, 'budget gauges: the ledger did not answer'),
      tenants: options.operator.tenants,
    });
  metrics?.watchMitigations(guarding.mitigations);
  if (guarding.abuseEntries) metrics?.watchAbuseActions(guarding.abuseEntries);
  metrics?.watchConfigFiles(() => configFiles.all());
  metrics?.watchPrices(() => prices.status());
  const storeFailures = (layer: string) =>
    guarding.alertStoreDown(
      layer,
      storeFailureReporter(logger, layer, metrics ? metrics.storeFailure : () => undefined),
    );
  return { guarding, pricing, prices, metering, audit, metrics: metrics || undefined, storeFailures, admission };
}

type Watching = ReturnType<typeof watchingParts>;

/** What publishes and hears tenant changes: the Redis of the stores, when they are on Redis and its URL is known. */
function tenantChanges(options: TenantOptions, stores: TollgateStores): TenantChanges | undefined {
  const redis = stores as TollgateStores & { prefix?: unknown; sendCommand?: (args: string[]) => Promise<unknown> };
  if (stores.kind !== 'redis' || typeof redis.sendCommand !== 'function' || typeof redis.prefix !== 'string')
    return undefined;
  if (options.redisUrl === undefined) return undefined;
  const sendCommand = redis.sendCommand.bind(redis);
  // Redis's client loads only with Redis stores, which loaded it already.
  const subscriber = loadOnDemand<{ createClient: typeof createClient }>(import.meta.url, '@redis/client').createClient(
    {
      url: options.redisUrl,
      name: 'tollgate-tenants',
    },
  );
  return {
    channel: `${redis.prefix}tenants`,
    publish: (channel, message) => sendCommand(['PUBLISH', channel, message]),
    subscriber,
  };
}

/**
 * Every tenant behind one lookup (the config file's, then those stored in the ledger's database, or in memory without
 * one), and auth's options reading it: a tenant's tier, and whether a key's tenant is known, on every request.
 */
function tenantParts(options: GatewayOptions, held: Held, watching: Watching) {
  const { ledger } = watching.metering;
  const tenants = new TenantDirectory({
    configTenants: options.tenants.config,
    table: ledger ? postgresTenantTable(ledger, options.budget.ledgerTable) : memoryTenantTable(),
    changes: tenantChanges(options.tenants, held.stores),
    problems: options.tenants.problems,
    log: held.log,
  });
  const { keyProblems } = options.auth;
  const auth: AuthOptions = {
    ...options.auth,
    tiers: { ...options.auth.tiers, tierOfTenant: (id) => tenants.tierOf(id) },
    // A stored tenant is as known as a config one; the config's rule checks the rest of what a key names.
    keyProblems: (key, at) =>
      keyProblems(
        {
          ...key,
          tenant: key.tenant !== undefined && tenants.has(key.tenant) ? undefined : key.tenant,
          // A team is still its tenant's: the config's teams judge it (a stored tenant holds none).
          teamTenant: key.teamTenant ?? key.tenant,
        },
        at,
      ),
    knowsTenant: (id) => tenants.has(id),
  };
  return { tenants, options: { ...options, auth } };
}

/** The upstreams and the budget: a routed request that moves to another target re-prices its reservation. */
function callingParts(
  options: GatewayOptions,
  deps: GatewayDeps,
  held: Held,
  watching: Watching,
  tenants: TenantDirectory,
) {
  const { logger, log } = held;
  const { guarding, pricing, metering, metrics } = watching;
  const layered = layeredStores(options, held.stores, metrics, deps, log);
  metrics?.watchStoreOutage(() => layered.leased?.lease.down ?? false);
  const healthMetrics = metering.registry && registerHealthMetrics(metering.registry);
  const providers = createProviderRouter(options.routing, {
    mock: options.routing.upstreams ? undefined : (deps.mock ?? createMockProvider()),
    pricing,
    env: deps.env,
    ...(metrics ? { observeUpstream: metrics.upstreamCall } : {}),
    ...(healthMetrics ? { observeProbe: healthMetrics.observeProbe } : {}),
    reprice: (req, res) => budget.reprice(req, res),
    onRouteEvent: (event) => logger.warn({ route: event }, `routing: ${event.type} ${event.target}`),
    onBreakerOpen: (target, reason) => {
      logger.error({ target, reason }, `routing: the circuit breaker of ${target} opened`);
      guarding.breakerOpen(target, reason);
    },
  });
  if (metering.registry && providers.routes) registerRoutingMetrics(metering.registry, providers.routes);
  if (healthMetrics && providers.routes) healthMetrics.watchTargets(providers.routes);
  // Keys are looked up by the chain and, by id, by the budget: a key's budget is part of its record.
  const keyLookup = createKeyLookup(options.auth, layered.observedStores, log);
  const budget = createBudgetGuard(options.budget, layered.limitStores, pricing, log, {
    ledger: metering.ledger,
    findKey: (id) => keyLookup.findById(id),
    listBudgetedKeys: () => keyLookup.listBudgeted(),
    tenantBudgets: (identity) => tenants.budgetSpecs(identity),
    ...(guarding.budgetHooks ? { alerts: guarding.budgetHooks } : {}),
    // A model group's request whose target's model budget is spent moves to the group's next target.
    ...(providers.routes ? { onModelBudgetSpent: providers.routes.skipSpentModel } : {}),
  });
  metrics?.watchBudgets(budget);
  return { ...layered, providers, budget, keyLookup };
}

type Calling = ReturnType<typeof callingParts>;

/**
 * What keeps the money right across restarts: the embedded ledger served to `tollgate report --data-dir` while this
 * process holds it (its table made first, so a reader before the first record finds an empty ledger rather than
 * none), and budget spend rebuilt after the spool's replay (the records of a proxy that died are in the ledger first).
 */
function keepingParts(options: GatewayOptions, held: Held, watching: Watching, calling: Calling) {
  const { dataDir, log } = held;
  const { metering } = watching;
  const embedded = metering.embedded;
  const ledgerServed =
    dataDir && embedded && resolve(options.metering.embeddedLedger ?? '') === dataDir.layout.ledger
      ? migrateUsageLedger(embedded)
          .then(() => serveLedger(embedded, dataDir.layout.socket))
          .catch((error: unknown) => {
            log(
              `tollgate proxy: \`tollgate report --data-dir\` cannot read this running proxy's ledger: ${error instanceof Error ? error.message : String(error)}`,
            );
            return undefined;
          })
      : undefined;
  const spend = keepSpend(
    options.spend,
    calling.limitStores,
    calling.budget,
    metering.ledger,
    async () => {
      await metering.replay();
      await metering.flush();
    },
    log,
  );
  const drift = spend?.drift;
  if (drift) watching.metrics?.watchDrift(() => drift.readings());
  return { ledgerServed, spend };
}

/** Every part of a gateway, made from its config's options, and what closes them. */
export function gatewayParts(configured: GatewayOptions, deps: GatewayDeps) {
  const held = heldParts(configured, deps);
  // The response cache (see cache-setup.ts), made first: a cache the stores cannot hold stops the start before anything runs.
  const responseCache = createGatewayCache(configured.cache, held.stores, held.log);
  const watching = watchingParts(configured, deps, held);
  const { tenants, options } = tenantParts(configured, held, watching);
  const calling = callingParts(options, deps, held, watching, tenants);
  const keeping = keepingParts(options, held, watching, calling);
  const { guarding, metering, audit } = watching;
  const { providers, budget, blocked, leased } = calling;
  // In this order: the upstream calls end (and settle, a cut answer's once its provider counted it), then the budget,
  // then the usage is written, the log flushed, then the stores close.
  const closers: (() => Promise<void> | void)[] = [
    () => watching.prices.close(),
    () => providers.close(),
    () => audit.flush(),
    () => metering.settled(),
    async () => {
      await budget.close();
      // Blocks go back once every request settled, then what the leases granted goes to Redis.
      await blocked?.blocks.retireAll(RETIRE_WAIT_MS);
      await leased?.lease.close();
    },
    () => keeping.spend?.close(),
    async () => (await keeping.ledgerServed)?.close(),
    () => metering.close(),
    () => tenants.close(),
    () => guarding.close(),
    () => held.proxyLog.close(),
    ...(responseCache ? [() => responseCache.close()] : []),
    ...(held.ownsStores ? [() => held.stores.close()] : []),
    () => held.kept?.keys?.close(),
    () => held.dataDir?.release(),
  ];
  return { options, deps, ...held, responseCache, ...watching, tenants, ...calling, ...keeping, closers };
}

export type BuiltParts = ReturnType<typeof gatewayParts>;

/**
 * Every part's options: what the gateway's parts are made from (the config folder makes them from a config,
 * `gatewayOptions`). Each type is its part's own.
 */
export interface GatewayOptions {
  auth: AuthOptions;
  limits: LimitOptions;
  budget: BudgetOptions;
  metering: MeteringOptions;
  guard: GuardSetupOptions;
  guardrails: GuardrailRules | undefined;
  cache: CacheSetupOptions | undefined;
  /** What the limits and the budget do while Redis is out. */
  storeOutage: StoreOutageConfig | undefined;
  /** Hot counters taken from Redis a block at a time. */
  blocks: BlocksSetting | undefined;
  spend: SpendOptions;
  log: LogOptions | undefined;
  /** The model list's makings but the provider of each model (the provider routing knows it). */
  models: Omit<ModelListOptions, 'providerOf'>;
  /** The config file's tenants, the rule a stored tenant passes, and where changes go out. */
  tenants: TenantOptions;
  /** The MCP servers and who may call which tool; undefined without `mcpServers`. */
  mcp: Omit<McpGatewayOptions, 'stages'> | undefined;
  /** The upstreams, models and routes, as the provider router reads them. */
  routing: Parameters<typeof createProviderRouter>[0];
  pricing: Parameters<typeof createPricing>[0];
  /** The price source read into `pricing` at start and at each refresh; undefined: the shipped table only. */
  prices: Parameters<Pricing['refreshFrom']>[0];
  /** The data directory the gateway holds while it runs. @default none */
  dataDir: string | undefined;
  /** What keys written to the data directory may name (the config's tenants, tiers and tool servers). */
  keyNames: object;
  /** The config's own keys. */
  keys: readonly ConfigKeyEntry[];
  /** The largest provider request body. */
  bodyLimit: string | number;
  /** The largest multipart upload (transcriptions). */
  uploadLimit: string | number;
  operator: OperatorOptions;
}

/** The gateway's parts, which its routes are built from. */
export interface GatewayParts {
  options: GatewayOptions;
  stores: TollgateStores;
  observedStores: TollgateStores;
  limitStores: TollgateStores;
  storeFailures: StoreFailureHandlers;
  pricing: Pricing;
  /** The price source's refresh (what `/admin/prices` shows); the shipped table's status without `prices`. */
  prices: PriceRefresh;
  providers: ReturnType<typeof createProviderRouter>;
  blocked: ReturnType<typeof blockedStores>;
  metering: ReturnType<typeof createMetering>;
  guarding: ReturnType<typeof createGatewayGuard>;
  budget: ReturnType<typeof createBudgetGuard>;
  /** Every tenant the gateway serves: the config file's, then the stored ones. */
  tenants: TenantDirectory;
  responseCache: ReturnType<typeof createGatewayCache>;
  configKeys: () => ReturnType<typeof keyRecordsFromConfig>;
  /** The files the gateway re-reads, and whether their last change was taken whole. */
  configFiles: ConfigFileStates;
  /** The chain's limiters and the budget, combined (the `limitsAndBudget` stage): the dashboard reads their quotas. */
  limitsAndBudget: RequestHandler;
  /** The audit trail every admin write goes through. */
  audit: AuditTrail;
  /** Who may use /admin and the dashboard: the admin key and OIDC sessions. */
  admission: OperatorAdmission;
  /** Budget spend kept by the usage ledger (rebuilt, its drift read and repaired); undefined without a ledger. */
  spend: SpendKeeper | undefined;
}
