// The gateway's gauges, read at each scrape (no cost per request): every budget's spent, limit, reserved and
// remaining, the guard's mitigations in force, whether each re-read file's last change was taken whole, the prices, and
// whether the stores are out while the limits and budgets serve through it.
import type { Registry } from 'prom-client';
import { OVERFLOW_LABEL } from '../prometheus-sink.js';
import { loadOptionalPeer } from '../optional-peer.js';

/** One budget's figures as the budget guard's `status()` gives them (its `BudgetStatus`): metering does not depend on the budget package. */
interface BudgetFigures {
  scope: string;
  id: string | null;
  tenantId: string | null;
  period: string;
  spentUsd: number;
  limitUsd: number;
  reservedUsd: number;
  remainingUsd: number;
  /** Projected spend at the period's end; null (or absent) when not known. */
  forecastUsd?: number | null;
}

/** What the gauges read the budgets from: the budget guard. */
export interface BudgetReader {
  status(): Promise<readonly BudgetFigures[]>;
}

/** prom-client, loaded when the metrics are made: the door stays importable without it (an optional peer). */
export function promClient(): typeof import('prom-client') {
  return loadOptionalPeer<typeof import('prom-client')>('prom-client', 'createGatewayMetrics()');
}

/** Distinct budget ids kept per scope; later ones are summed under `__other__`. */
const MAX_LABEL_VALUES = 100;
/** The guard's mitigations, each a series of `tollgate_guard_mitigations` (0 when none is in force). */
export const MITIGATION_KINDS = ['suspend', 'throttle', 'block'] as const;

interface BudgetRow {
  scope: string;
  id: string;
  period: string;
  spent: number;
  limit: number;
  reserved: number;
  remaining: number;
  /** Null while no budget of the row has a forecast: no series then. */
  forecast: number | null;
}

/**
 * One row per budget (scope, id, period: a tenant's day and month budgets apart); per scope the first ids kept as
 * labels and the rest summed under `__other__`, as the usage sink bounds its labels.
 */
function boundedBudgets(statuses: readonly BudgetFigures[]): BudgetRow[] {
  const rows = new Map<string, BudgetRow>();
  const idOf = budgetIdLabeller();
  for (const status of statuses) {
    const id = idOf(status);
    const key = `${status.scope} ${id} ${status.period}`;
    let row = rows.get(key);
    if (row === undefined) {
      row = {
        scope: status.scope,
        id,
        period: status.period,
        spent: 0,
        limit: 0,
        reserved: 0,
        remaining: 0,
        forecast: null,
      };
      rows.set(key, row);
    }
    row.spent += status.spentUsd;
    row.limit += status.limitUsd;
    row.reserved += status.reservedUsd;
    row.remaining += status.remainingUsd;
    if (status.forecastUsd != null) row.forecast = (row.forecast ?? 0) + status.forecastUsd;
  }
  return [...rows.values()];
}

/** A budget's `id` label: per scope the first ids as they are, later ones `__other__`; a tenant's own `acme/gpt-4o`. */
function budgetIdLabeller(): (budget: Pick<BudgetFigures, 'scope' | 'id' | 'tenantId'>) => string {
  const idsPerScope = new Map<string, Set<string>>();
  return (budget) => {
    let seen = idsPerScope.get(budget.scope);
    if (seen === undefined) idsPerScope.set(budget.scope, (seen = new Set()));
    let id = budget.tenantId === null ? (budget.id ?? 'global') : `${budget.tenantId}/${budget.id}`;
    if (budget.id !== null && !seen.has(id)) {
      if (seen.size < MAX_LABEL_VALUES) seen.add(id);
      else id = OVERFLOW_LABEL;
    }
    return id;
  };
}

/** One scope's drift reading (the budget package's `DriftReading`): its counter less the usage ledger's figure. */
export interface DriftFigures {
  scope: string;
  id: string | null;
  tenantId: string | null;
  period: string;
  driftNanoUsd: number;
}

/** What the gauges read at each scrape, given once the gateway has it. */
interface GaugeWatchers {
  watchBudgets(budget: BudgetReader): void;
  watchMitigations(list: () => readonly { kind: (typeof MITIGATION_KINDS)[number]; anomalyId?: string }[]): void;
  watchAbuseActions(list: () => readonly AbuseAction[]): void;
  watchConfigFiles(list: () => readonly { path: string; status: string }[]): void;
  watchPrices(read: () => PriceReading): void;
  watchStoreOutage(read: () => boolean): void;
  watchDrift(read: () => readonly DriftFigures[]): void;
}

/** One subject of the abuse model's latest scoring: what its score does (in shadow, would do), and until when. */
export interface AbuseAction {
  action: string;
  /** Epoch ms. */
  until?: number;
}

/** What the price gauges read of the gateway's price source: the version in use, when it loaded, refused reads. */
export interface PriceReading {
  version: string;
  /** ISO time; null: no source loaded (the shipped table). */
  loadedAt: string | null;
  failures: number;
}

/** Registers the budget, mitigation and config-file gauges; `report` hears a budget read that failed at a scrape. */
export function registerGauges(registers: Registry[], report: (error: unknown) => void): GaugeWatchers {
  const { Gauge } = promClient();
  // One read of the budgets per scrape, shared by the three gauges (the registry collects them concurrently).
  let budget: BudgetReader | undefined;
  let reading: Promise<ReturnType<typeof boundedBudgets>> | undefined;
  const readBudgets = () => {
    reading ??= (budget ? budget.status() : Promise.resolve([]))
      .then(boundedBudgets)
      .finally(() => setImmediate(() => (reading = undefined)));
    return reading;
  };
  const budgetGauge = (name: string, help: string, field: 'spent' | 'limit' | 'reserved' | 'remaining' | 'forecast') =>
    new Gauge({
      name,
      help,
      labelNames: ['scope', 'id', 'period'],
      registers,
      async collect() {
        this.reset();
        try {
          for (const row of await readBudgets()) {
            const value = row[field];
            if (value !== null) this.set({ scope: row.scope, id: row.id, period: row.period }, value);
          }
        } catch (error) {
          // The ledger did not answer: no budget series this scrape, rather than a failed scrape.
          report(error);
        }
      },
    });
  budgetGauge(
    'tollgate_budget_spent_usd',
    'Spent in the current period, per configured budget (scope tenant, key, user, feature, model (id `tenant/model`) or global; its period; ids past 100 per scope summed as __other__).',
    'spent',
  );
  budgetGauge('tollgate_budget_limit_usd', 'The limit of the current period, per configured budget.', 'limit');
  budgetGauge('tollgate_budget_reserved_usd', 'Held by requests in flight, per configured budget.', 'reserved');
  budgetGauge(
    'tollgate_budget_remaining_usd',
    'What the current period has left, per configured budget: limit plus top-up credit, less spent and reserved.',
    'remaining',
  );
  budgetGauge(
    'tollgate_budget_forecast_usd',
    'Spend projected at the end of the current period at the rate of the last hour (a quarter of shorter periods); no series until the rate is known, nor for rolling budgets.',
    'forecast',
  );

  return { watchBudgets: (guard) => (budget = guard), ...otherGauges(registers) };
}

/** The mitigations and config-file gauges. */
function otherGauges(registers: Registry[]): Omit<GaugeWatchers, 'watchBudgets'> {
  const { Gauge } = promClient();
  let drift: (() => readonly DriftFigures[]) | undefined;
  new Gauge({
    name: 'tollgate_budget_drift_nano_usd',
    help: "Each budget's store counter less what the usage ledger holds for it, beyond what live holds explain (nano-USD; the scope of the budget furthest off, from its last reading): 0 when they agree.",
    labelNames: ['scope', 'id', 'period'],
    registers,
    collect() {
      this.reset();
      const rows = new Map<string, { labels: { scope: string; id: string; period: string }; value: number }>();
      const idOf = budgetIdLabeller();
      for (const reading of drift?.() ?? []) {
        const labels = { scope: reading.scope, id: idOf(reading), period: reading.period };
        const key = `${labels.scope} ${labels.id} ${labels.period}`;
        const row = rows.get(key);
        if (!row || Math.abs(reading.driftNanoUsd) > Math.abs(row.value))
          rows.set(key, { labels, value: reading.driftNanoUsd });
      }
      for (const { labels, value } of rows.values()) this.set(labels, value);
    },
  });
  let mitigations: (() => readonly { kind: string; anomalyId?: string }[]) | undefined;
  new Gauge({
    name: 'tollgate_guard_mitigations',
    help: "The guard's mitigations in force as this process knows them, by kind: suspend (keys and tenants refused), throttle, block (client addresses).",
    labelNames: ['kind'],
    registers,
    collect() {
      const counts = new Map<string, number>(MITIGATION_KINDS.map((kind) => [kind, 0]));
      for (const mitigation of mitigations?.() ?? [])
        counts.set(mitigation.kind, (counts.get(mitigation.kind) ?? 0) + 1);
      for (const [kind, count] of counts) this.set({ kind }, count);
    },
  });

  // Read from the model's scoring, not the mitigations: in shadow nothing is in force, and what it would do counts.
  let abuseActions: (() => readonly AbuseAction[]) | undefined;
  new Gauge({
    name: 'tollgate_guard_abuse_actions',
    help: "The guard's abuse model's actions as this process knows them, by action (throttle, block): in force, or in shadow mode noted (what it would do).",
    labelNames: ['action'],
    registers,
    collect() {
      const counts = new Map<string, number>([
        ['throttle', 0],
        ['block', 0],
      ]);
      const now = Date.now();
      for (const { action, until } of abuseActions?.() ?? [])
        if (counts.has(action) && (until === undefined || until > now)) counts.set(action, counts.get(action)! + 1);
      for (const [action, count] of counts) this.set({ action }, count);
    },
  });

  let configFiles: (() => readonly { path: string; status: string }[]) | undefined;
  new Gauge({
    name: 'tollgate_config_file_valid',
    help: 'Per file the gateway re-reads (its config file, a data directory keys.json): 1 when its last change validated and was taken whole, 0 when only its revocations, expiries and deletions were (or nothing).',
    labelNames: ['file'],
    registers,
    collect() {
      this.reset();
      for (const file of configFiles?.() ?? []) this.set({ file: file.path }, file.status === 'valid' ? 1 : 0);
    },
  });
  return {
    watchMitigations: (list) => (mitigations = list),
    watchAbuseActions: (list) => (abuseActions = list),
    watchConfigFiles: (list) => (configFiles = list),
    watchDrift: (read) => (drift = read),
    ...priceGauges(registers),
    ...storeOutageGauge(registers),
  };
}

/**
 * Whether the store is out while the limits and budgets serve through the outage (storeOutage lease or failOpen): no
 * middleware meets a failure then, so tollgate_store_failures_total stays still and only this says so.
 */
function storeOutageGauge(registers: Registry[]): Pick<GaugeWatchers, 'watchStoreOutage'> {
  const { Gauge } = promClient();
  let read: (() => boolean) | undefined;
  new Gauge({
    name: 'tollgate_store_outage',
    help: 'Redis out while the limits and budgets serve through it (storeOutage lease or failOpen): 1 out, 0 answering. Under failClosed, see tollgate_store_failures_total.',
    registers,
    collect() {
      this.set(read?.() ? 1 : 0);
    },
  });
  return { watchStoreOutage: (reader) => (read = reader) };
}

/** The prices in use: their version (all processes reading one source show the same), when loaded, refused reads. */
function priceGauges(registers: Registry[]): Pick<GaugeWatchers, 'watchPrices'> {
  const { Counter, Gauge } = promClient();
  let read: (() => PriceReading) | undefined;
  new Gauge({
    name: 'tollgate_prices_version_info',
    help: 'The version of the prices in use (a hash of the whole table: shipped, source and config): 1.',
    labelNames: ['version'],
    registers,
    collect() {
      this.reset();
      if (read) this.set({ version: read().version }, 1);
    },
  });
  new Gauge({
    name: 'tollgate_prices_loaded_timestamp_seconds',
    help: 'When the price source in use was loaded (Unix seconds); 0 while the shipped table is in use.',
    registers,
    collect() {
      const loadedAt = read?.().loadedAt;
      this.set(loadedAt ? Date.parse(loadedAt) / 1000 : 0);
    },
  });
  new Counter({
    name: 'tollgate_prices_refresh_failures_total',
    help: 'Reads of the price source refused (unreadable, or not valid): the prices in use were kept.',
    registers,
    collect() {
      this.reset();
      const failures = read?.().failures ?? 0;
      if (failures > 0) this.inc(failures);
    },
  });
  return { watchPrices: (reader) => (read = reader) };
}
