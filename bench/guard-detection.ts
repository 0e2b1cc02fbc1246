// Benchmark: the guard's detectors on days of replayed synthetic traffic with injected runaways, on a fake clock (no sleeping).
import { parseArgs } from 'node:util';
import { createMemoryStores } from '@tollgate/core';
import { MemoryGuardStore } from '@tollgate/guard';
import { RepeatCounter } from '../packages/guard/src/repeat-counter.js';
import { SpendAnomalyDetector } from '../packages/guard/src/spend-anomaly.js';
import { requestFingerprint } from '../packages/guard/src/request-fingerprint.js';
import { resolveSpendAnomalyOptions } from '../packages/guard/src/spend-anomaly-options.js';
import type { SubjectFinding } from '../packages/guard/src/spend-anomaly.js';
import {
  aloneContext,
  runAlone,
  sectionText,
  type BenchContext,
  type SectionResult,
  type TargetVerdict,
} from './lib/section.js';
import { fmtNumber, median, quantile, table } from './lib/stats.js';

/** The proxy contract's values (DESIGN.md), so the figures are those a deployment gets by default. */
const GUARD_CONFIG = {
  spendAnomaly: {
    bucketSeconds: 60,
    zScore: 4,
    minBuckets: 10,
    minSpendUsd: 0.05,
    action: 'alert' as const,
    cooldown: '15m',
    flushInterval: 0,
  },
  repeatedRequests: { max: 20, windowSeconds: 60 },
};
const BUCKET_MS = GUARD_CONFIG.spendAnomaly.bucketSeconds * 1000;
/** Traffic is generated and flushed to the detector every tick: four times a bucket. */
const TICK_MS = 15_000;
const MINUTE_MS = 60_000;
const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;
const KEYS_PER_TENANT = 10;

type TrafficClass = 'steady' | 'diurnal' | 'bursty';
type InjectionKind = '100x' | '10x' | 'loop' | 'leaked';

interface Injection {
  kind: InjectionKind;
  start: number;
  end: number;
  /** Loops: ms between two sends of the same body. */
  loopIntervalMs: number;
  /** Leaked keys: the addresses the thief uses. */
  thieves: string[];
  detectedAt?: number;
  detectedBy?: string;
  repeatRefusedAt?: number;
}

interface SimKey {
  id: string;
  tenant: string;
  cls: TrafficClass;
  /** Requests per minute, averaged over a day. */
  rate: number;
  /** Mean USD per request. */
  cost: number;
  /** Spread of request costs (lognormal sigma). */
  sigma: number;
  tokensPerUsd: number;
  addresses: string[];
  /** Diurnal: hour of the day its office opens. */
  opensAt: number;
  burstUntil: number;
  burstFactor: number;
  injection?: Injection;
  /** Some clean keys send one fixed prompt on a timer (a health check): the repeat rule must leave them alone. */
  pollEveryMs?: number;
  nextPollAt: number;
  nextLoopAt: number;
}

/** A seeded generator, so every run replays the same traffic. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Random {
  readonly #next: () => number;
  #spare: number | undefined;
  constructor(seed: number) {
    this.#next = mulberry32(seed);
  }
  uniform(low = 0, high = 1): number {
    return low + (high - low) * this.#next();
  }
  logUniform(low: number, high: number): number {
    return Math.exp(this.uniform(Math.log(low), Math.log(high)));
  }
  int(low: number, high: number): number {
    return Math.floor(this.uniform(low, high + 1));
  }
  normal(): number {
    if (this.#spare !== undefined) {
      const spare = this.#spare;
      this.#spare = undefined;
      return spare;
    }
    const u = Math.max(this.#next(), 1e-12);
    const v = this.#next();
    const r = Math.sqrt(-2 * Math.log(u));
    this.#spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }
  poisson(lambda: number): number {
    if (lambda <= 0) return 0;
    if (lambda > 40) return Math.max(0, Math.round(lambda + Math.sqrt(lambda) * this.normal()));
    const limit = Math.exp(-lambda);
    let k = 0;
    let p = this.#next();
    while (p > limit) {
      k++;
      p *= this.#next();
    }
    return k;
  }
  /**
   * The sum of `n` lognormal costs of mean `mean`, and the largest of them. Past 40 terms a normal
   * approximation of the sum, and the largest taken at the 1-in-n quantile.
   */
  costs(n: number, mean: number, sigma: number): { sum: number; largest: number } {
    const shift = (sigma * sigma) / 2;
    if (n <= 40) {
      let sum = 0;
      let largest = 0;
      for (let i = 0; i < n; i++) {
        const cost = mean * Math.exp(sigma * this.normal() - shift);
        sum += cost;
        if (cost > largest) largest = cost;
      }
      return { sum, largest };
    }
    const sd = mean * Math.sqrt(Math.exp(sigma * sigma) - 1);
    const sum = Math.max(0, n * mean + Math.sqrt(n) * sd * this.normal());
    return { sum, largest: Math.min(sum, mean * Math.exp(sigma * Math.sqrt(2 * Math.log(n)) - shift)) };
  }
}

/** Office hours: a smooth bump from opening to ten hours later, a trickle at night; averages 1 over a day. */
const DIURNAL_NIGHT = 0.04;
function officeHours(hourOfDay: number, opensAt: number): number {
  const h = (hourOfDay - opensAt + 24) % 24;
  return h < 10 ? DIURNAL_NIGHT + Math.sin((Math.PI * h) / 10) ** 2 : DIURNAL_NIGHT;
}
const DIURNAL_MEAN = DIURNAL_NIGHT + 10 / 24 / 2;

function makeKeys(count: number, random: Random): SimKey[] {
  return Array.from({ length: count }, (_, index) => {
    const draw = random.uniform();
    const cls: TrafficClass = draw < 0.4 ? 'steady' : draw < 0.75 ? 'diurnal' : 'bursty';
    // Normal spend per bucket from $0.005 to $1: keys whose runaway is worth an alarm at minSpendUsd $0.05.
    const rate = random.logUniform(0.5, 40);
    const spendPerMinute = random.logUniform(0.005, 1);
    const clientSide = random.uniform() < 0.15;
    const addressCount = clientSide ? random.int(30, 300) : random.int(1, 3);
    return {
      id: `k${index}`,
      tenant: `t${Math.floor(index / KEYS_PER_TENANT)}`,
      cls,
      rate,
      cost: spendPerMinute / rate,
      sigma: cls === 'bursty' ? 1.2 : 0.8,
      tokensPerUsd: random.logUniform(5_000, 500_000),
      addresses: Array.from({ length: addressCount }, (_, a) => `10.${index >> 8}.${index & 255}.${a}`),
      opensAt: random.uniform(6, 10),
      burstUntil: 0,
      burstFactor: 1,
      nextPollAt: 0,
      nextLoopAt: 0,
    };
  });
}

/** Runaways on distinct keys, each starting after a day and a half of history, on a tick boundary. */
function inject(keys: SimKey[], random: Random, durationMs: number): void {
  const shuffled = [...keys].sort(() => random.uniform() - 0.5);
  const plan: [InjectionKind, number, number][] = [
    ['100x', 0.15, 20 * MINUTE_MS],
    ['10x', 0.25, 60 * MINUTE_MS],
    ['loop', 0.1, 20 * MINUTE_MS],
    ['leaked', 0.1, 60 * MINUTE_MS],
  ];
  let next = 0;
  for (const [kind, share, length] of plan) {
    const count = Math.round(keys.length * share);
    for (let i = 0; i < count; i++) {
      const key = shuffled[next++]!;
      const earliest = 1.5 * DAY_MS;
      const start = Math.floor(random.uniform(earliest, durationMs - length - HOUR_MS) / TICK_MS) * TICK_MS;
      key.injection = {
        kind,
        start,
        end: start + length,
        loopIntervalMs: random.uniform(1_000, 2_500),
        thieves: Array.from({ length: random.int(20, 80) }, (_, a) => `198.51.${i}.${a}`),
      };
      key.nextLoopAt = start;
    }
  }
  for (const key of shuffled.slice(next)) {
    if (random.uniform() < 0.1) key.pollEveryMs = random.uniform(10_000, 30_000);
  }
}

/** Requests per minute the key's owner sends at `t` (runaways come on top). */
function normalRate(key: SimKey, t: number, random: Random): number {
  switch (key.cls) {
    case 'steady':
      return key.rate;
    case 'diurnal':
      return (key.rate * officeHours((t % DAY_MS) / HOUR_MS, key.opensAt)) / DIURNAL_MEAN;
    case 'bursty': {
      // A 2-4x burst of 1-6 minutes every other hour or so: a batch job, a busy meeting.
      if (t >= key.burstUntil && random.uniform() < (0.5 * TICK_MS) / HOUR_MS) {
        key.burstUntil = t + random.uniform(1, 6) * MINUTE_MS;
        key.burstFactor = random.uniform(2, 4);
      }
      return t < key.burstUntil ? key.rate * key.burstFactor : key.rate;
    }
  }
}

/** Splits `n` requests over `pool` addresses: per request while few, evenly over a sample of the pool when many. */
function spread(n: number, pool: readonly string[], random: Random): Map<string, number> {
  const counts = new Map<string, number>();
  if (n <= 64) {
    for (let i = 0; i < n; i++) {
      const address = pool[Math.floor(random.uniform() * pool.length)]!;
      counts.set(address, (counts.get(address) ?? 0) + 1);
    }
    return counts;
  }
  const used = Math.min(pool.length, n);
  for (let i = 0; i < used; i++) counts.set(pool[i]!, Math.floor(n / used) + (i < n % used ? 1 : 0));
  return counts;
}

/** Hands `n` requests costing `costs` to the detector, one sample per address (the largest request goes with the first). */
function observeSpread(
  detector: SpendAnomalyDetector,
  key: SimKey,
  n: number,
  costs: { sum: number; largest: number },
  byAddress: Map<string, number>,
): void {
  let first = true;
  for (const [address, count] of byAddress) {
    const share = (costs.sum * count) / n;
    const largest = first ? costs.largest : 0;
    first = false;
    detector.observe({
      keyId: key.id,
      tenantId: key.tenant,
      costNanoUsd: Math.round(share * 1e9),
      tokens: Math.round(share * key.tokensPerUsd),
      requests: count,
      largestCostNanoUsd: Math.round(largest * 1e9),
      largestTokens: Math.round(largest * key.tokensPerUsd),
      address,
    });
  }
}

interface Finding {
  subject: string;
  at: number;
  metric: string;
  z: number;
  value: number;
  mean: number;
  sd: number;
}

export interface DetectionResult {
  allKeys: SimKey[];
  keys: number;
  tenants: number;
  hours: number;
  replaySeconds: number;
  findings: Finding[];
  injected: SimKey[];
  pollers: number;
  pollerRefusals: number;
  keyFalsePositives: Map<TrafficClass, number>;
  cleanKeyHours: number;
  tenantFalsePositives: number;
  cleanTenantHours: number;
}

/** Replays the traffic through the real detector (memory store, fake clock) and the real repeat counter. */
export async function replayTraffic(options: { keys: number; days: number; seed: number }): Promise<DetectionResult> {
  const random = new Random(options.seed);
  const durationMs = options.days * DAY_MS;
  const keys = makeKeys(options.keys, random);
  inject(keys, random, durationMs);
  let now = 0;
  const clock = () => now;
  const store = new MemoryGuardStore({ clock });
  const resolved = resolveSpendAnomalyOptions(GUARD_CONFIG.spendAnomaly);
  const findings: Finding[] = [];
  const detector = new SpendAnomalyDetector({
    store,
    params: { bucketMs: resolved.bucketMs, detector: resolved.detector },
    watchKeys: true,
    watchTenants: true,
    flushIntervalMs: 0,
    onFinding: (found: SubjectFinding) =>
      findings.push({
        subject: found.subject,
        at: now + TICK_MS,
        metric: found.finding.metric,
        z: found.finding.z,
        value: found.finding.value,
        mean: found.finding.expected,
        sd: found.finding.sd,
      }),
    onStoreError: (error) => {
      throw error;
    },
  });
  const stores = createMemoryStores({ clock, sweepIntervalMs: 0 });
  const repeats = new RepeatCounter(stores.counter, {
    max: GUARD_CONFIG.repeatedRequests.max,
    windowMs: GUARD_CONFIG.repeatedRequests.windowSeconds * 1000,
    prefix: 'rep:',
  });
  let pollerRefusals = 0;
  const started = performance.now();

  for (let tick = 0; tick < durationMs; tick += TICK_MS) {
    now = tick;
    for (const key of keys) {
      const injection = key.injection;
      const active = injection !== undefined && tick >= injection.start && tick < injection.end;
      const perTick = TICK_MS / MINUTE_MS;
      // The owner's traffic, from the owner's addresses.
      const rate = normalRate(key, tick, random);
      const n = random.poisson(rate * perTick);
      // A runaway takes the key to k times what it spends at that hour, and at least k times its daily average.
      const runaway = Math.max(rate, key.rate) * perTick;
      let extra = 0;
      if (active && injection.kind === '100x') extra = random.poisson(100 * runaway - rate * perTick);
      if (active && injection.kind === '10x') extra = random.poisson(10 * runaway - rate * perTick);
      const fromOwner = n + extra;
      if (fromOwner > 0) {
        observeSpread(
          detector,
          key,
          fromOwner,
          random.costs(fromOwner, key.cost, key.sigma),
          spread(fromOwner, key.addresses, random),
        );
      }
      // A thief with the key: three times its usual traffic from addresses it never used.
      if (active && injection.kind === 'leaked') {
        const stolen = random.poisson(3 * runaway);
        if (stolen > 0) {
          observeSpread(
            detector,
            key,
            stolen,
            random.costs(stolen, key.cost, key.sigma),
            spread(stolen, injection.thieves, random),
          );
        }
      }
      // An agent stuck in a loop: the same request every 1-2.5 s, through the real repeat counter.
      if (active && injection.kind === 'loop') {
        const fingerprint = requestFingerprint({
          model: 'gpt-4o',
          messages: [{ role: 'user', content: `loop of ${key.id}` }],
          user: 'agent',
        })!;
        let sent = 0;
        while (key.nextLoopAt < tick + TICK_MS) {
          now = key.nextLoopAt;
          const { result } = await repeats.count(key.id, fingerprint);
          if (!result.allowed) injection.repeatRefusedAt ??= now;
          else sent++;
          key.nextLoopAt += injection.loopIntervalMs;
        }
        now = tick;
        if (sent > 0)
          observeSpread(detector, key, sent, random.costs(sent, key.cost, 0.1), new Map([[key.addresses[0]!, sent]]));
      }
      if (key.pollEveryMs !== undefined) {
        const fingerprint = requestFingerprint({
          model: 'gpt-4o-mini',
          messages: [{ role: 'user', content: 'ping' }],
          stream: true,
        })!;
        while (key.nextPollAt < tick + TICK_MS) {
          now = key.nextPollAt;
          const { result } = await repeats.count(key.id, fingerprint);
          if (!result.allowed) pollerRefusals++;
          key.nextPollAt += key.pollEveryMs;
        }
        now = tick;
      }
    }
    await detector.flush();
    if (tick % DAY_MS === 0) stores.sweep();
  }
  await detector.close();
  await stores.close();
  const replaySeconds = (performance.now() - started) / 1000;

  // Each anomaly of a key inside its injection (or its cooldown after it) is a detection; any other is a false positive.
  const cooldownMs = resolved.cooldownMs;
  const byId = new Map(keys.map((key) => [key.id, key]));
  const keyFalsePositives = new Map<TrafficClass, number>([
    ['steady', 0],
    ['diurnal', 0],
    ['bursty', 0],
  ]);
  let tenantFalsePositives = 0;
  for (const finding of findings) {
    const [kind, id] = finding.subject.split(':') as ['key' | 'tenant', string];
    if (kind === 'key') {
      const key = byId.get(id)!;
      const injection = key.injection;
      if (injection && finding.at > injection.start && finding.at <= injection.end + cooldownMs) {
        if (injection.detectedAt === undefined) {
          injection.detectedAt = finding.at;
          injection.detectedBy = finding.metric;
        }
      } else {
        keyFalsePositives.set(key.cls, keyFalsePositives.get(key.cls)! + 1);
      }
    } else {
      const explained = keys.some(
        (key) =>
          key.tenant === id &&
          key.injection &&
          finding.at > key.injection.start &&
          finding.at <= key.injection.end + cooldownMs,
      );
      if (!explained) tenantFalsePositives++;
    }
  }
  const injected = keys.filter((key) => key.injection);
  const hours = durationMs / HOUR_MS;
  const injectedHours = injected.reduce(
    (sum, key) => sum + (key.injection!.end - key.injection!.start + cooldownMs) / HOUR_MS,
    0,
  );
  const tenants = Math.ceil(keys.length / KEYS_PER_TENANT);
  return {
    keys: keys.length,
    tenants,
    hours,
    replaySeconds,
    allKeys: keys,
    findings,
    injected,
    pollers: keys.filter((key) => key.pollEveryMs !== undefined).length,
    pollerRefusals,
    keyFalsePositives,
    cleanKeyHours: keys.length * hours - injectedHours,
    tenantFalsePositives,
    cleanTenantHours: tenants * hours - injectedHours,
  };
}

/**
 * The tuning set: 17 is the seed the detector's constants were tuned and reported on until now (the
 * tuning's other two seeds were not recorded; 18 and 19 stand in for them). Only checked here.
 */
export const TUNING_SEEDS: readonly number[] = [17, 18, 19];
/** Traffic the constants never saw: the figures and the targets of the report come from these. */
export const HELD_OUT_SEEDS: readonly number[] = [1001, 1002, 1003, 1004, 1005];
/** `--quick`: a smaller replay on fewer seeds of each set. */
const QUICK = { keys: 200, days: 3, tuning: TUNING_SEEDS.slice(0, 1), heldOut: HELD_OUT_SEEDS.slice(0, 2) };
const FULL = { keys: 500, days: 6, tuning: TUNING_SEEDS, heldOut: HELD_OUT_SEEDS };

/** The replays of one set of seeds, pooled: every injection of every seed; false positives and clean hours summed. */
interface SeedSet {
  seeds: readonly number[];
  runs: DetectionResult[];
  injected: SimKey[];
  keyFalsePositives: Map<TrafficClass, number>;
  cleanKeyHours: number;
  tenantFalsePositives: number;
  cleanTenantHours: number;
  pollers: number;
  pollerRefusals: number;
}

const countOf = (falsePositives: Map<TrafficClass, number>) => [...falsePositives.values()].reduce((a, b) => a + b, 0);

async function replaySeeds(seeds: readonly number[], size: { keys: number; days: number }, context: BenchContext) {
  const runs: DetectionResult[] = [];
  for (const seed of seeds) {
    context.log(`guard detection: seed ${seed}, ${size.days} days of ${size.keys} keys`);
    runs.push(await replayTraffic({ ...size, seed }));
  }
  const sum = (of: (run: DetectionResult) => number) => runs.reduce((total, run) => total + of(run), 0);
  const keyFalsePositives = new Map<TrafficClass, number>();
  for (const run of runs) {
    for (const [cls, count] of run.keyFalsePositives) {
      keyFalsePositives.set(cls, (keyFalsePositives.get(cls) ?? 0) + count);
    }
  }
  const set: SeedSet = {
    seeds,
    runs,
    injected: runs.flatMap((run) => run.injected),
    keyFalsePositives,
    cleanKeyHours: sum((run) => run.cleanKeyHours),
    tenantFalsePositives: sum((run) => run.tenantFalsePositives),
    cleanTenantHours: sum((run) => run.cleanTenantHours),
    pollers: sum((run) => run.pollers),
    pollerRefusals: sum((run) => run.pollerRefusals),
  };
  return set;
}

interface KindSummary {
  kind: InjectionKind;
  count: number;
  caught: number;
  within: number;
  delays: number[];
  targetBuckets: number;
  metrics: string;
}

/** Buckets from a runaway's start to the flush that reported it. */
const delayOf = (injection: Injection, at: number) => (at - injection.start) / BUCKET_MS;

function summarise(set: SeedSet, kind: InjectionKind, targetBuckets: number, by: 'spend' | 'repeat'): KindSummary {
  const injections = set.injected.map((key) => key.injection!).filter((injection) => injection.kind === kind);
  const delays: number[] = [];
  const metrics = new Map<string, number>();
  for (const injection of injections) {
    const at = by === 'repeat' ? injection.repeatRefusedAt : injection.detectedAt;
    if (at === undefined) continue;
    delays.push(delayOf(injection, at));
    if (by === 'spend') metrics.set(injection.detectedBy!, (metrics.get(injection.detectedBy!) ?? 0) + 1);
  }
  return {
    kind,
    count: injections.length,
    caught: delays.length,
    within: delays.filter((delay) => delay <= targetBuckets).length,
    delays,
    targetBuckets,
    metrics: by === 'repeat' ? 'repeatedRequests' : [...metrics].map(([metric, n]) => `${metric} ${n}`).join(', '),
  };
}

const pct = (part: number, whole: number) => (whole === 0 ? 'n/a' : `${fmtNumber((100 * part) / whole, 1)}%`);
const buckets = (value: number) => (Number.isFinite(value) ? fmtNumber(value, 2) : 'n/a');
const maxOf = (values: number[]) => (values.length > 0 ? Math.max(...values) : Number.NaN);
const perThousand = (count: number, hours: number) => (1000 * count) / hours;
const seedList = (seeds: readonly number[]) => seeds.join(', ');

/** Each kind of runaway against its target delay, in the report's order: 100×, 10×, loops (twice), leaked keys. */
function summariseAll(set: SeedSet): { label: string; row: KindSummary }[] {
  return [
    { label: '100× spend (20 min)', row: summarise(set, '100x', 2, 'spend') },
    { label: '10× spend (60 min)', row: summarise(set, '10x', 5, 'spend') },
    { label: 'loop, by repeatedRequests', row: summarise(set, 'loop', 2, 'repeat') },
    { label: 'loop, by spend anomaly', row: summarise(set, 'loop', 2, 'spend') },
    { label: 'leaked key, +3× from 20-80 new addresses (60 min)', row: summarise(set, 'leaked', 5, 'spend') },
  ];
}

function detectionTable(set: SeedSet): string {
  return table(
    ['injected', 'count', 'caught', 'within target', 'delay p50', 'p95', 'max (buckets)', 'found by'],
    summariseAll(set).map(({ label, row }) => [
      label,
      fmtNumber(row.count),
      pct(row.caught, row.count),
      `${pct(row.within, row.count)} (≤ ${row.targetBuckets})`,
      buckets(median(row.delays)),
      buckets(quantile(row.delays, 0.95)),
      buckets(maxOf(row.delays)),
      row.metrics,
    ]),
  );
}

/** False positives of both sets side by side: count and rate per 1,000 clean hours. */
function falsePositiveTable(heldOut: SeedSet, tuning: SeedSet): string {
  const rate = (count: number, hours: number | undefined) =>
    hours === undefined ? '' : fmtNumber(perThousand(count, hours), 2);
  const both = (count: (set: SeedSet) => number, hours?: (set: SeedSet) => number) =>
    [heldOut, tuning].flatMap((set) => [fmtNumber(count(set)), rate(count(set), hours?.(set))]);
  const classes: TrafficClass[] = ['steady', 'diurnal', 'bursty'];
  return table(
    ['false positives', 'held out: count', 'per 1,000 hours', 'tuning seeds: count', 'per 1,000 hours'],
    [
      [
        'keys (all)',
        ...both(
          (set) => countOf(set.keyFalsePositives),
          (set) => set.cleanKeyHours,
        ),
      ],
      ...classes.map((cls) => [`keys, ${cls}`, ...both((set) => set.keyFalsePositives.get(cls) ?? 0)]),
      [
        'tenants',
        ...both(
          (set) => set.tenantFalsePositives,
          (set) => set.cleanTenantHours,
        ),
      ],
      [
        `health-check keys refused by repeatedRequests (${heldOut.pollers}, ${tuning.pollers} keys)`,
        ...both((set) => set.pollerRefusals),
      ],
    ],
  );
}

/** The three targets, judged on one set of seeds. */
function verdicts(set: SeedSet): TargetVerdict[] {
  const [hundred, ten, loops] = summariseAll(set).map(({ row }) => row) as [KindSummary, KindSummary, KindSummary];
  const keyFalsePositives = countOf(set.keyFalsePositives);
  const keyRate = perThousand(keyFalsePositives, set.cleanKeyHours);
  const tenantRate = perThousand(set.tenantFalsePositives, set.cleanTenantHours);
  const maxDelay = (row: KindSummary) => buckets(maxOf(row.delays));
  return [
    {
      target: 'Guard: every 100× runaway and every loop caught within 2 buckets',
      holds: hundred.within === hundred.count && loops.within === loops.count,
      figures:
        `100×: ${hundred.within}/${hundred.count} (max ${maxDelay(hundred)} buckets); ` +
        `loops: ${loops.within}/${loops.count} (max ${maxDelay(loops)})`,
    },
    {
      target: 'Guard: at least 95% of 10× runaways caught within 5 buckets',
      holds: ten.within >= 0.95 * ten.count,
      figures:
        `${ten.within}/${ten.count} (${pct(ten.within, ten.count)}), ` +
        `p95 delay ${buckets(quantile(ten.delays, 0.95))} buckets`,
    },
    {
      target: 'Guard: at most 1 false positive per 1,000 key-hours',
      holds: keyRate <= 1 && set.pollerRefusals === 0,
      figures:
        `keys ${fmtNumber(keyRate, 2)} (${keyFalsePositives} in ${fmtNumber(set.cleanKeyHours)} key-hours), ` +
        `tenants ${fmtNumber(tenantRate, 2)}, health checks refused ${set.pollerRefusals}`,
    },
  ];
}

/** Each seed's key false positives: count, and rate per 1,000 key-hours. */
function perSeed(set: SeedSet): string {
  return set.runs
    .map((run, index) => {
      const count = countOf(run.keyFalsePositives);
      return `${set.seeds[index]}: ${count} (${fmtNumber(perThousand(count, run.cleanKeyHours), 2)})`;
    })
    .join('; ');
}

export interface DetectionSeeds {
  /** Seeds the constants were tuned on: checked, reported for comparison. */
  tuning?: readonly number[];
  /** Seeds of traffic the constants never saw: the report's figures and targets. */
  heldOut?: readonly number[];
}

export async function runGuardDetectionBenchmark(
  context: BenchContext,
  seeds: DetectionSeeds = {},
): Promise<SectionResult> {
  const plan = context.quick ? QUICK : FULL;
  const tuningSeeds = seeds.tuning ?? plan.tuning;
  const heldOutSeeds = seeds.heldOut ?? plan.heldOut;
  const overlap = tuningSeeds.filter((seed) => heldOutSeeds.includes(seed));
  // A seed in both sets would report tuned figures as out of sample.
  if (overlap.length > 0) throw new Error(`guard detection: seeds ${seedList(overlap)} are tuning and held-out seeds`);
  const size = { keys: plan.keys, days: plan.days };
  const started = performance.now();
  const tuning = await replaySeeds(tuningSeeds, size, context);
  const heldOut = await replaySeeds(heldOutSeeds, size, context);
  const took = (performance.now() - started) / 1000;
  const { keys, tenants, hours } = heldOut.runs[0]!;
  const inSample = verdicts(tuning);
  const inSampleHold = inSample.every((verdict) => verdict.holds) ? 'all hold' : 'do not all hold';
  const body = [
    `Each seed: ${fmtNumber(keys)} keys in ${fmtNumber(tenants)} tenants over ${fmtNumber(hours)} hours of synthetic ` +
      "traffic (README.md says how it is made), replayed through the guard's detector and repeat counter on a fake " +
      `clock with the proxy contract's settings. The constants were tuned on seeds ${seedList(tuningSeeds)} (only ` +
      `checked here); **the figures and targets come from seeds ${seedList(heldOutSeeds)}**, pooled. ` +
      `${tuningSeeds.length + heldOutSeeds.length} replays took ${fmtNumber(took, 1)} s.`,
    '',
    `Held out (seeds ${seedList(heldOutSeeds)}: out of sample, the figures that count):`,
    '',
    detectionTable(heldOut),
    '',
    `Tuning seeds (${seedList(tuningSeeds)}: in sample, for comparison):`,
    '',
    detectionTable(tuning),
    '',
    "Delay: buckets from the runaway's start to the flush that reported it (0.25 is the least).",
    '',
    falsePositiveTable(heldOut, tuning),
    '',
    `Key false positives per seed, count (per 1,000 key-hours): held out ${perSeed(heldOut)}; ` +
      `tuning ${perSeed(tuning)}. Clean key-hours: ${fmtNumber(heldOut.cleanKeyHours)} held out, ` +
      `${fmtNumber(tuning.cleanKeyHours)} tuning (every hour of every key outside an injected runaway and ` +
      'its cooldown); tenant-hours likewise.',
    '',
    `In sample the targets ${inSampleHold}: ${inSample.map((verdict) => verdict.figures).join('; ')}.`,
  ].join('\n');
  const targets = verdicts(heldOut).map((verdict) => ({ ...verdict, figures: `held out: ${verdict.figures}` }));
  const title = '8. Guard: detection of runaways, loops and leaked keys (replayed traffic, fake clock, held out)';
  return { title, body, targets };
}

// `tsx bench/guard-detection.ts [--quick] [--tuning 17] [--held-out 1001,1002]`: prints the section, writes no file.
if (runAlone(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      tuning: { type: 'string' },
      'held-out': { type: 'string' },
    },
  });
  const list = (value: string | undefined) => value?.split(',').map((seed) => Number(seed.trim()));
  const tuning = list(values.tuning);
  const heldOut = list(values['held-out']);
  const seeds = { ...(tuning ? { tuning } : {}), ...(heldOut ? { heldOut } : {}) };
  console.log(
    sectionText(await runGuardDetectionBenchmark(aloneContext('guard-detection', values.quick ?? false), seeds)),
  );
}
