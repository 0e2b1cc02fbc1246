// Randomized model-based test of the money engine: random reserves, extensions, settles, releases, top-ups, expiries,
// period rolls, Redis losses, crashes, rebuilds and JSON calls in flight through budgetGuard, every budget compared after each step with the
// reference model (test/conformance/money-model.ts), on memory and Redis stores. Fixed seed; a failure prints it.
import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { budgetGuard } from '@tollgate/budget';
import type { BudgetGuard, BudgetGuardOptions, CreditJournal, SpendSource } from '@tollgate/budget';
import type { CallerSpend } from '../packages/budget/src/rebuild.js';
import { createMemoryStores, createPricing, getContext, usdToNano } from '@tollgate/core';
import type { TollgateContext, TollgateStores, UsageRecord } from '@tollgate/core';
import { successorRecord } from '@tollgate/auth';
import { keyBudgetOf, keyBudgetScope } from '@tollgate/core/store-contracts';
import type { ApiKeyRecord } from '@tollgate/core/store-contracts';
import { preCallCheckOf } from '@tollgate/core/checks';
import type { PreCallCheck } from '@tollgate/core/checks';
import { postgresCreditJournal } from '@tollgate/metering';
import { creditTableName } from '../packages/metering/src/postgres-ledger.js';
import { createRedisStores } from '@tollgate/redis';
import pg from 'pg';
import { createClient } from 'redis';
import { freePort, PrivateRedis } from '../packages/redis/test/helpers.js';
import { MoneyModel, nextPeriodStart } from './conformance/money-model.js';
import type { BudgetDef, Caller, ModelHold, Period } from './conformance/money-model.js';

/** Replay: MONEY_MODEL_SEED (and MONEY_MODEL_PATH from a failure's report); MONEY_MODEL_RUNS for a longer search. */
const SEED = Number(process.env.MONEY_MODEL_SEED ?? 4242);
const RUNS = process.env.MONEY_MODEL_RUNS === undefined ? undefined : Number(process.env.MONEY_MODEL_RUNS);
const PATH = process.env.MONEY_MODEL_PATH;

/** Nano-USD per token: input (every input class alike) and output. */
const PRICES = { 'm-big': { input: 1_000, output: 2_000 }, 'm-small': { input: 250, output: 500 } } as const;
type ModelName = keyof typeof PRICES;
const pricing = createPricing({
  models: Object.fromEntries(
    Object.entries(PRICES).map(([model, { input, output }]) => {
      const perMTok = input / 1_000;
      const classes = { inputPerMTok: perMTok, cachedInputPerMTok: perMTok, cacheWritePerMTok: perMTok };
      return [model, { provider: 'openai', ...classes, cacheWrite1hPerMTok: perMTok, outputPerMTok: output / 1_000 }];
    }),
  ),
});

const CALLERS: Caller[] = [
  { keyId: 'k1', tenantId: 'acme', userId: 'alice' },
  { keyId: 'k2', tenantId: 'acme', userId: 'bob' },
  { keyId: 'k2', tenantId: 'acme' },
  { keyId: 'k3', tenantId: 'beta', userId: 'carol' },
  // One session of acme from two keys: one budget, beside each key's calls without a session.
  { keyId: 'k1', tenantId: 'acme', userId: 'alice', sessionId: 's1' },
  { keyId: 'k2', tenantId: 'acme', sessionId: 's1' },
  // Teams of acme, stacked on the tenant: alice is exempt from research's template, bob and dave get it, key k4
  // (calling without an end user) has an entry of its own; ops has a template only, and a month budget.
  { keyId: 'k1', tenantId: 'acme', userId: 'alice', team: 'research' },
  { keyId: 'k4', tenantId: 'acme', userId: 'bob', team: 'research' },
  { keyId: 'k4', tenantId: 'acme', team: 'research' },
  { keyId: 'k5', tenantId: 'acme', userId: 'dave', team: 'research' },
  { keyId: 'k5', tenantId: 'acme', team: 'ops' },
];

/** A budget of team `team` of acme, or of its member `member` (`user:<id>`, `key:<id>`). */
const teamBudget = (team: string, period: Period, limit: number, member?: string): BudgetDef => ({
  name: member === undefined ? `team ${team} of acme` : `member ${member} of team ${team} of acme`,
  selector:
    member === undefined
      ? { scope: 'team', id: team, tenant: 'acme' }
      : { scope: 'member', id: member, tenant: 'acme', team },
  period,
  limit,
  applies: (c) =>
    c.tenantId === 'acme' &&
    c.team === team &&
    (member === undefined || member === (c.userId === undefined ? `key:${c.keyId}` : `user:${c.userId}`)),
});

/** A tenant's budget of `period`. */
const tenantBudget = (id: string, period: Period, limit: number): BudgetDef => ({
  name: `tenant ${id} (${period})`,
  selector: { scope: 'tenant', id },
  period,
  limit,
  applies: (caller) => caller.tenantId === id,
});

/** Limits of a few requests each, so that clamps and refusals come within a handful of steps. */
const BUDGETS: BudgetDef[] = [
  { name: 'global', selector: { scope: 'global' }, period: 'day', limit: 30e6, applies: () => true },
  tenantBudget('acme', 'day', 12e6),
  tenantBudget('acme', 'month', 20e6),
  tenantBudget('beta', 'hour', 8e6),
  {
    name: 'key k1',
    selector: { scope: 'key', id: 'k1' },
    period: 'hour',
    limit: 6e6,
    applies: (c) => c.keyId === 'k1',
  },
  ...['alice', 'bob', 'dave'].map((user): BudgetDef => ({
    name: `end user ${user} of acme`,
    selector: { scope: 'user', id: user, tenant: 'acme' },
    period: 'day',
    limit: 4e6,
    applies: (c) => c.tenantId === 'acme' && c.userId === user,
  })),
  {
    name: 'session s1 of acme',
    selector: { scope: 'session', id: 's1', tenant: 'acme' },
    period: 'day',
    limit: 5e6,
    applies: (c) => c.tenantId === 'acme' && c.sessionId === 's1',
  },
  {
    name: 'model m-big of acme',
    selector: { scope: 'model', id: 'm-big', tenant: 'acme' },
    period: 'day',
    limit: 7e6,
    applies: (c, model) => c.tenantId === 'acme' && model === 'm-big',
  },
  teamBudget('research', 'day', 4e6),
  teamBudget('ops', 'month', 6e6),
  teamBudget('research', 'day', 3e6, 'user:bob'),
  teamBudget('research', 'day', 3e6, 'user:dave'),
  teamBudget('research', 'hour', 2e6, 'key:k4'),
  teamBudget('ops', 'hour', 2e6, 'key:k5'),
];

/** The budgets the selector of `budget` names: every budget of its scope (a tenant's day and month budgets alike). */
function namedLike(budget: BudgetDef): BudgetDef[] {
  const named = JSON.stringify(budget.selector);
  return BUDGETS.filter((each) => JSON.stringify(each.selector) === named);
}

/** The same budgets as the guard's options. */
const usd = (nano: number) => nano / 1e9;
const BUDGET_OPTIONS = {
  global: { usd: usd(30e6), period: 'day' },
  tenants: {
    acme: [
      { usd: usd(12e6), period: 'day' },
      { usd: usd(20e6), period: 'month' },
    ],
    beta: { usd: usd(8e6), period: 'hour' },
  },
  keys: { k1: { usd: usd(6e6), period: 'hour' } },
  tenantUsers: { acme: { usd: usd(4e6), period: 'day' } },
  modelBudgets: { acme: { 'm-big': { usd: usd(7e6), period: 'day' } } },
  sessionBudgets: { tenants: { acme: { usd: usd(5e6), period: 'day' } } },
  teamBudgets: {
    acme: {
      research: {
        budget: { usd: usd(4e6), period: 'day' },
        members: {
          each: { budget: { usd: usd(3e6), period: 'day' } },
          'user:alice': { exempt: true },
          'key:k4': { budget: { usd: usd(2e6), period: 'hour' } },
        },
      },
      ops: {
        budget: { usd: usd(6e6), period: 'month' },
        members: { each: { budget: { usd: usd(2e6), period: 'hour' } } },
      },
    },
  },
} as const;

type Step =
  | { kind: 'reserve'; caller: number; model: ModelName; input: number; output: number; pid: number }
  | { kind: 'extend'; pick: number; tokens: number; atLeast: number }
  | { kind: 'settle'; pick: number; how: 'zero' | 'below' | 'at' | 'above'; permille: number }
  | { kind: 'release'; pick: number }
  | { kind: 'topUp'; budget: number; usd: number }
  | { kind: 'time'; ms: number }
  | { kind: 'roll'; period: Period; offsetMs: number }
  | { kind: 'loseData' }
  | { kind: 'crash'; pid: number }
  | { kind: 'rebuild' }
  | { kind: 'reset'; budget: number }
  | JsonCallsStep
  | KeyStep;

// ---- JSON calls in flight (issue 59, item 2): the step and its arbitrary -------------------------------------------
interface JsonCallsStep {
  kind: 'jsonCalls';
  caller: number;
  model: ModelName;
  input: number;
  cap: number;
  /** Output tokens the upstream produces for each, whatever its cap. */
  produced: number;
  count: number;
  pid: number;
}

const jsonCallsStep: fc.Arbitrary<JsonCallsStep> = fc.record({
  kind: fc.constant('jsonCalls' as const),
  caller: fc.nat({ max: CALLERS.length - 1 }),
  model: fc.constantFrom<ModelName>('m-big', 'm-small'),
  input: fc.integer({ min: 1, max: 800 }),
  cap: fc.integer({ min: 1, max: 300 }),
  produced: fc.integer({ min: 1, max: 4_000 }),
  count: fc.integer({ min: 1, max: 3 }),
  pid: fc.nat({ max: 1 }),
});
// ---- end of JSON calls in flight ---------------------------------------------------------------------------------

/** What the guard holds for a request, as far as the test reads it (`BudgetHold`). */
interface GuardHold {
  id: string;
  granted: number;
  extensions?: { id: string; amount: number }[];
}

/** One process: its stores, its budget guard and the guard's pre-call check (the steps combineLimits drives). */
interface Process {
  stores: TollgateStores;
  guard: BudgetGuard;
  check: PreCallCheck<GuardHold | undefined>;
}

/** The stores under test, their clocks, and what can happen to them. */
interface System {
  processes: Process[];
  /** The guard's clock (periods). */
  appNow(): number;
  /** The store's clock (reservation TTLs). */
  storeNow(): Promise<number>;
  pass(ms: number): Promise<void>;
  /** Moves the guard's clock (and a fake store clock) to `t`. */
  roll(t: number): void;
  /** When reservation `id` of `process` expires, in store time. */
  expiryOf(process: Process, id: string, storeNow: number): number;
  loseData?(): Promise<void>;
  /** Replaces process `pid` by a new one, the old one dropped without a settle. */
  restart(pid: number): Promise<void>;
  close(): Promise<void>;
}

interface Backend {
  name: string;
  runs: number;
  maxSteps: number;
  timeStep: fc.Arbitrary<number>;
  /** A reservation this close to its expiry (store ms) is waited out before a step: it cannot expire during one. */
  expiryGuardMs: number;
  /** A Redis loss is one thing and a process's crash another; a memory store is lost with its process. */
  losesDataApart: boolean;
  /** `guard`: more options of every process's budget guard (a credit journal). */
  open(guard?: GuardExtras): Promise<System>;
}

/** Options a block of this test adds to the guards' (see "Resets and top-ups, journaled" below). */
type GuardExtras = Pick<BudgetGuardOptions, 'creditJournal'>;

/** `extra`: steps a block of this test adds to the common ones. */
function stepsOf(backend: Backend, extra: fc.WeightedArbitrary<Step>[] = []): fc.Arbitrary<Step[]> {
  const pick = fc.nat({ max: 1_000 });
  const step = fc.oneof(
    {
      weight: 6,
      arbitrary: fc.record({
        kind: fc.constant('reserve' as const),
        caller: fc.nat({ max: CALLERS.length - 1 }),
        model: fc.constantFrom<ModelName>('m-big', 'm-small'),
        input: fc.integer({ min: 1, max: 1_500 }),
        output: fc.integer({ min: 1, max: 1_500 }),
        pid: fc.nat({ max: 1 }),
      }),
    },
    {
      weight: 3,
      arbitrary: fc.record({
        kind: fc.constant('extend' as const),
        pick,
        tokens: fc.integer({ min: 1, max: 1_000 }),
        atLeast: fc.integer({ min: 1, max: 1_000 }),
      }),
    },
    {
      weight: 4,
      arbitrary: fc.record({
        kind: fc.constant('settle' as const),
        pick,
        how: fc.constantFrom('zero' as const, 'below' as const, 'at' as const, 'above' as const),
        permille: fc.nat({ max: 999 }),
      }),
    },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('release' as const), pick }) },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant('topUp' as const),
        budget: fc.nat({ max: BUDGETS.length - 1 }),
        usd: fc.constantFrom(0.001, 0.0025, 0.004),
      }),
    },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('time' as const), ms: backend.timeStep }) },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant('roll' as const),
        period: fc.constantFrom<Period>('hour', 'day', 'month'),
        offsetMs: fc.nat({ max: 1_000 }),
      }),
    },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('crash' as const), pid: fc.nat({ max: 1 }) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('rebuild' as const) }) },
    ...(backend.losesDataApart ? [{ weight: 1, arbitrary: fc.constant({ kind: 'loseData' as const }) }] : []),
    ...extra,
    { weight: 1, arbitrary: jsonCallsStep },
  );
  return fc.array(step, { minLength: 1, maxLength: backend.maxSteps, size: 'max' });
}

/** A process over `stores`: a budget guard with the test's budgets, reserves gated until its spend is rebuilt. */
function processOver(
  stores: TollgateStores,
  now: () => number,
  reservationTtl: number,
  extras: GuardExtras = {},
): Process {
  const guard = budgetGuard({
    ledger: stores.ledger,
    pricing,
    log: false,
    now,
    reservationTtl,
    ...BUDGET_OPTIONS,
    ...extras,
    keyBudgets: (keyId) => keyBudgetOf(keyBook.records.get(keyId)),
  });
  stores.ledger.rebuildGate!.require();
  return { stores, guard, check: preCallCheckOf(guard) as PreCallCheck<GuardHold | undefined> };
}

/** A request of `caller` for `model` with its estimate set, as the meter leaves it before the budget guard. */
function requestOf(caller: Caller, model: ModelName, input: number, output: number) {
  const req = new IncomingMessage(new Socket());
  const res = new ServerResponse(req);
  const ctx = getContext(req, res);
  ctx.identity = { ...caller, scopes: [], authMethod: 'api_key' };
  const keyBudget = keyBudgetOf(keyBook.records.get(caller.keyId));
  if (keyBudget) ctx.identity.keyBudget = keyBudget;
  const price = pricing.find(model)!;
  const cost = input * PRICES[model].input + output * PRICES[model].output;
  ctx.setEstimate(
    { provider: 'openai', model, inputTokens: input, maxOutputTokens: output, costNanoUsd: cost, totalTokens: 0 },
    price,
  );
  return { req, res, ctx };
}

/** The usage ledger the model keeps, as a SpendSource: its records summed per caller and model. */
function spendSourceOf(model: MoneyModel): SpendSource {
  const rowOf = (record: MoneyModel['records'][number]): CallerSpend => ({
    keyId: record.caller.keyId,
    userId: record.caller.userId ?? null,
    tenantId: record.caller.tenantId,
    feature: null,
    model: record.model,
    session: record.caller.sessionId ?? null,
    team: record.caller.team ?? null,
    spentNanoUsd: record.cost,
  });
  // As the PostgreSQL source reads it: sums of the records finished before the cut, the later ones one by one.
  return {
    async spentByCaller(since, until, finishedBefore, finishedFrom) {
      const sums = new Map<string, CallerSpend>();
      for (const record of model.records) {
        if (record.at < since || record.at >= until) continue;
        if (finishedBefore !== undefined && record.finishedAt >= finishedBefore) continue;
        if (finishedFrom !== undefined && record.finishedAt < finishedFrom) continue;
        const row = rowOf(record);
        const key = JSON.stringify({ ...row, spentNanoUsd: 0 });
        const sum = sums.get(key) ?? { ...row, spentNanoUsd: 0 };
        sum.spentNanoUsd += record.cost;
        sums.set(key, sum);
      }
      return [...sums.values()];
    },
    async recordsFinishedSince(since, until, finishedFrom) {
      return model.records
        .filter((record) => record.at >= since && record.at < until && record.finishedAt >= finishedFrom)
        .map((record) => ({ ...rowOf(record), id: record.id, startedAt: record.at, finishedAt: record.finishedAt }));
    },
  };
}

/** A request the test keeps between its steps: the model's hold and the real one. */
interface Held {
  model: ModelHold;
  real: GuardHold;
  ctx: TollgateContext;
  process: Process;
  input: number;
}

class Run {
  readonly held: Held[] = [];

  constructor(
    readonly system: System,
    readonly backend: Backend,
    readonly model = new MoneyModel(keyBook.budgets),
  ) {}

  /** Store time once no reservation can expire during the next step; the model charges what expired. */
  async settleClocks(): Promise<number> {
    for (;;) {
      const now = await this.system.storeNow();
      const soon = this.model.liveExpiries().filter((t) => t > now && t <= now + this.backend.expiryGuardMs);
      if (soon.length === 0) {
        this.model.expire(this.system.appNow(), now);
        return now;
      }
      await sleep(Math.max(...soon) - now + 1);
    }
  }

  /** The hold a step picks among those a live process can still act on (undefined: none). */
  #pick(pick: number, filter: (held: Held) => boolean = () => true): Held | undefined {
    const candidates = this.held.filter((held) => held.model.pid !== undefined && filter(held));
    return candidates.length === 0 ? undefined : candidates[pick % candidates.length];
  }

  async step(step: Step, storeNow: number): Promise<void> {
    const { system, model } = this;
    const now = system.appNow();
    switch (step.kind) {
      case 'reserve':
        await this.#reserve(step, storeNow);
        return;
      case 'extend': {
        const held = this.#pick(step.pick, (h) => model.inItsPeriods(h.model, now));
        if (held) await this.#extend(held, step.tokens, Math.min(step.atLeast, step.tokens), storeNow);
        return;
      }
      case 'settle': {
        const held = this.#pick(step.pick);
        if (held) await this.#settle(held, step);
        return;
      }
      case 'release': {
        const held = this.#pick(step.pick);
        if (!held) return;
        await held.process.check.cancel(held.real);
        model.cancel(held.model, now);
        this.held.splice(this.held.indexOf(held), 1);
        return;
      }
      case 'topUp': {
        const budget = BUDGETS[step.budget]!;
        await system.processes[0]!.guard.topUp(budget.selector, step.usd);
        for (const each of namedLike(budget)) model.topUp(each, usdToNano(step.usd), now);
        return;
      }
      case 'time':
        return system.pass(step.ms);
      case 'roll':
        return system.roll(nextPeriodStart(step.period, now) + step.offsetMs);
      case 'loseData':
        await system.loseData!();
        model.loseData();
        return;
      case 'crash':
        return this.#crash(step.pid % system.processes.length);
      case 'rebuild': {
        const { guard, stores } = system.processes[0]!;
        const report = await guard.rebuild(spendSourceOf(model));
        await stores.ledger.rebuildGate!.markRebuilt(report.slots);
        model.rebuild(now);
        return;
      }
      case 'reset':
        throw new Error('a reset step runs only in the journaled block (JournaledRun)');
      case 'jsonCalls':
        return this.jsonCalls(step, storeNow);
      default:
        return keyBook.step(step, now);
    }
  }

  async #reserve(step: Extract<Step, { kind: 'reserve' }>, storeNow: number): Promise<Held | undefined> {
    const { system, model } = this;
    const caller = keyBook.callerNow(CALLERS[step.caller]!);
    const price = PRICES[step.model];
    const process = system.processes[step.pid % system.processes.length]!;
    const { req, res, ctx } = requestOf(caller, step.model, step.input, step.output);
    const verdict = await process.check.attempt(req, res);
    const inputCost = step.input * price.input;
    const expected = model.reserve(
      {
        caller,
        model: step.model,
        amount: inputCost + step.output * price.output,
        minAmount: inputCost + Math.min(16, step.output) * price.output,
        pid: step.pid % system.processes.length,
      },
      system.appNow(),
      () => system.expiryOf(process, (verdict as { value: GuardHold }).value.id, storeNow),
    );
    const got = verdict.kind === 'allowed' ? `granted ${verdict.value?.granted}` : verdict.kind;
    const want = expected.kind === 'granted' ? `granted ${expected.hold.first.amount}` : expected.kind;
    if (got !== (want === 'refused' ? 'denied' : want)) throw new Error(`the reserve was ${got}; the model: ${want}`);
    if (verdict.kind !== 'allowed' || expected.kind !== 'granted') return undefined;
    process.check.commit(req, res, verdict.value);
    const held: Held = { model: expected.hold, real: verdict.value!, ctx, process, input: step.input };
    this.held.push(held);
    return held;
  }

  async #extend(held: Held, tokens: number, atLeast: number, storeNow: number): Promise<number> {
    const { output } = PRICES[held.model.model as ModelName];
    const got = await held.ctx.extendOutput(tokens, atLeast);
    const granted = this.model.extend(held.model, tokens * output, atLeast * output, this.system.appNow(), () =>
      this.system.expiryOf(held.process, held.real.extensions!.at(-1)!.id, storeNow),
    );
    const want = Math.floor(granted / output);
    if (got !== want) throw new Error(`the extension granted ${got} tokens; the model: ${want}`);
    return got;
  }

  async #settle(held: Held, step: Extract<Step, { kind: 'settle' }>): Promise<void> {
    const total = MoneyModel.heldFor(held.model);
    const part = Math.floor((total * step.permille) / 1_000);
    await this.#settleAt(held, { zero: 0, below: part, at: total, above: total + part + 1 }[step.how]);
  }

  /** Settles a held request at `actual` nano-USD, in the guard and the model. */
  async #settleAt(held: Held, actual: number): Promise<void> {
    // The record as the meter writes it: its id and when its call finished name it in a settle (a rebuild's cut).
    const record = {
      id: `record-${held.ctx.requestId}`,
      requestId: held.ctx.requestId,
      timestamp: new Date(this.system.appNow()).toISOString(),
      latencyMs: 0,
      model: held.model.model,
      inputTokens: held.input,
      costNanoUsd: actual,
    } as UsageRecord;
    await held.ctx.settle(record);
    this.model.settle(held.model, actual, this.system.appNow(), record.id);
    this.held.splice(this.held.indexOf(held), 1);
  }

  // ---- JSON calls in flight (issue 59, item 2) -------------------------------------------------------------------
  // `count` JSON calls reserved at once, all in flight, each answered by an upstream that ignores its cap
  // (`produced` output tokens): served from a stream, the hold follows the output as the meter's tap asks (twice
  // what is held, or what the output needs), the answer is cut when an extension is refused, and billed what was
  // delivered. No budget these calls start within may end past its limit, whatever else is held.

  async jsonCalls(step: JsonCallsStep, storeNow: number): Promise<void> {
    const now = this.system.appNow();
    const within = BUDGETS.filter((budget) => this.#headroom(budget, now) >= 0);
    const calls: Held[] = [];
    for (let i = 0; i < step.count; i++) {
      const reserve = { kind: 'reserve' as const, caller: step.caller, model: step.model, pid: step.pid };
      const held = await this.#reserve({ ...reserve, input: step.input, output: step.cap }, storeNow);
      if (held) calls.push(held);
    }
    for (const held of calls) await this.#answerJson(held, step.produced, storeNow);
    const after = this.system.appNow();
    const past = within.filter((budget) => this.#headroom(budget, after) < 0).map((budget) => budget.name);
    if (past.length > 0) throw new Error(`JSON calls in flight took ${past.join(', ')} past the limit`);
  }

  /** A budget's limit and credit less what is spent and held (negative: past its limit). */
  #headroom(budget: BudgetDef, now: number): number {
    const { spent, credit, held } = this.model.figures(budget, now);
    return budget.limit + credit - spent - held;
  }

  /** The answer of a call that produces `produced` output tokens, held as the tap holds it, billed what went out. */
  async #answerJson(held: Held, produced: number, storeNow: number): Promise<void> {
    const price = PRICES[held.model.model as ModelName];
    // The output tokens the reservation granted (after a clamp): what is held before any extension.
    let holdTokens = Math.floor((held.real.granted - held.input * price.input) / price.output);
    while (produced > holdTokens && this.model.inItsPeriods(held.model, this.system.appNow())) {
      const needed = produced - holdTokens;
      const got = await this.#extend(held, Math.max(needed, holdTokens), needed, storeNow);
      if (got <= 0) break;
      holdTokens += got;
    }
    const delivered = Math.min(produced, holdTokens);
    this.model.note(delivered < produced ? 'JSON call cut' : 'JSON call whole');
    await this.#settleAt(held, held.input * price.input + delivered * price.output);
  }

  // ---- end of JSON calls in flight ---------------------------------------------------------------------------

  async #crash(pid: number): Promise<void> {
    await this.system.restart(pid);
    // A memory store dies with its process: its spend, credit and holds with it.
    if (!this.backend.losesDataApart) this.model.loseData();
    this.model.crash(pid);
    for (const held of [...this.held]) if (held.model.pid === undefined) this.held.splice(this.held.indexOf(held), 1);
  }

  /** Every budget as the guard's status shows it against the model; throws naming each difference. */
  async compare(): Promise<void> {
    const now = this.system.appNow();
    const guard = this.system.processes[0]!.guard;
    const differences: string[] = [];
    for (const budget of this.model.budgets) {
      const status = (await guard.status(budget.selector)).find((s) => s.period === budget.period);
      const figures = this.model.figures(budget, now);
      const want = {
        spent: figures.spent,
        credit: figures.credit,
        held: figures.held,
        remaining: this.model.remaining(budget, now),
      };
      const got = status && {
        spent: status.spentNanoUsd,
        credit: status.creditNanoUsd,
        held: status.reservedNanoUsd,
        remaining: status.remainingNanoUsd,
      };
      if (JSON.stringify(got) !== JSON.stringify(want))
        differences.push(`${budget.name}: shows ${JSON.stringify(got)}, the model ${JSON.stringify(want)}`);
    }
    if (differences.length > 0) throw new Error(differences.join('\n'));
  }
}

/** Makes the run of one sequence of steps (a block of this test may bring its own). */
type RunMaker = (system: System, backend: Backend) => Run;

/** Runs `steps` on a fresh system and model, comparing every budget after each step; tallies the events in `seen`. */
async function runSteps(
  backend: Backend,
  steps: Step[],
  seen: Map<string, number>,
  makeRun: RunMaker = (system) => new Run(system, backend),
): Promise<void> {
  keyBook.reset();
  const system = await backend.open();
  const run = makeRun(system, backend);
  keyBook.watch(run.model);
  try {
    for (const [index, step] of steps.entries()) {
      const storeNow = await run.settleClocks();
      try {
        await run.step(step, storeNow);
        await run.settleClocks();
        await run.compare();
      } catch (error) {
        // A reservation may have expired during a step slower than the guard: say so, it is no money defect.
        const tookMs = (await system.storeNow()) - storeNow;
        const slow =
          backend.expiryGuardMs > 0 && tookMs > backend.expiryGuardMs ? ` (step and checks took ${tookMs} ms)` : '';
        throw new Error(`step ${index + 1} ${JSON.stringify(step)}${slow}: ${(error as Error).message}`);
      }
    }
  } finally {
    for (const [event, count] of run.model.seen) seen.set(event, (seen.get(event) ?? 0) + count);
    await system.close();
  }
}

async function closeProcess({ guard, stores }: Process): Promise<void> {
  await guard.close();
  await stores.close();
}

/** Memory stores on a fake clock (periods and TTLs alike), starting two hours before a month ends. */
const memory: Backend = {
  name: 'memory',
  runs: 300,
  maxSteps: 40,
  timeStep: fc.integer({ min: 1, max: 120_000 }),
  expiryGuardMs: 0,
  losesDataApart: false,
  async open(guard) {
    const TTL = 60_000;
    let now = Date.UTC(2026, 10, 30, 22, 0, 0);
    const clock = () => now;
    const open = () => processOver(createMemoryStores({ clock, sweepIntervalMs: 0 }), clock, TTL, guard);
    const processes = [open()];
    await processes[0]!.stores.ledger.rebuildGate!.markRebuilt([]);
    return {
      processes,
      appNow: clock,
      storeNow: async () => now,
      pass: async (ms) => void (now += ms),
      roll: (t) => void (now = t),
      expiryOf: (_process, _id, storeNow) => storeNow + TTL,
      async restart(pid) {
        await closeProcess(processes[pid]!);
        processes[pid] = open();
      },
      close: () => closeProcess(processes[0]!),
    };
  },
};

/**
 * Two processes on a Redis of the test's own (flushed between runs and for a loss: never the shared one). TTLs run
 * on Redis's clock, so time passes for real and reservations are short; periods follow the guards' clock, set 40 days
 * ahead so that no period the test shows ends in Redis's time, and moved for a roll.
 */
function redisBackend(server: () => PrivateRedis): Backend {
  const TTL = 400;
  return {
    name: 'redis',
    runs: 50,
    maxSteps: 30,
    timeStep: fc.constantFrom(0, 150, 500),
    expiryGuardMs: 250,
    losesDataApart: true,
    async open(guard) {
      const url = server().url;
      const flush = async () => {
        const client = createClient({ url });
        await client.connect();
        await client.flushAll();
        await client.close();
      };
      await flush();
      let app = Date.now() + 40 * 86_400_000;
      const open = () =>
        processOver(createRedisStores({ url, prefix: 'money-model:', timeoutMs: 5_000 }), () => app, TTL, guard);
      const processes = [open(), open()];
      await processes[0]!.stores.ledger.rebuildGate!.markRebuilt([]);
      const send = (args: string[]) => (processes[0]!.stores as ReturnType<typeof createRedisStores>).sendCommand(args);
      return {
        processes,
        appNow: () => app,
        async storeNow() {
          const [seconds, micros] = (await send(['TIME'])) as [string, string];
          return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
        },
        pass: (ms) => sleep(ms),
        roll: (t) => void (app = t),
        // The expiry bucket the ledger holds the reservation in (one Redis: no sharded ledger).
        expiryOf: (process, id) =>
          (process.stores.ledger as unknown as { heldUntil(id: string): number | undefined }).heldUntil(id) ??
          Number.NaN,
        loseData: flush,
        async restart(pid) {
          await closeProcess(processes[pid]!);
          processes[pid] = open();
        },
        close: async () => void (await Promise.all(processes.map(closeProcess))),
      };
    },
  };
}

// ---- Keys that carry their budget: rotations and per-key budgets created at run time (issue 59, item 1) ----
// The key store is the test's own (a map of records, as a gateway's key store holds them): requests carry their key's
// budget as auth puts it on their identity, the guard finds it by key id for status and rebuilds. A rotation moves a
// lineage (k2, k3) to a new key that continues its budget; a budget given at run time applies from the next request.
// The model's rule: a budget of lineage L applies to a caller whose key's record carries a budget counted under L.

type KeyStep = { kind: 'rotateKey'; lineage: number } | { kind: 'giveKeyBudget'; lineage: number; limit: number };

const LINEAGES = ['k2', 'k3'] as const;

const KEY_STEPS: { weight: number; arbitrary: fc.Arbitrary<Step> }[] = [
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('rotateKey' as const), lineage: fc.nat({ max: 1 }) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('giveKeyBudget' as const),
      lineage: fc.nat({ max: 1 }),
      limit: fc.constantFrom(3e6, 5e6),
    }),
  },
];

const KEY_EVENTS = ['key rotated', 'key budget given', 'reserve on a rotated key with its budget'];

class KeyBook {
  records = new Map<string, ApiKeyRecord>();
  /** The key each lineage calls with now. */
  current = new Map<string, string>();
  /** The static budgets and those given at run time (the model reads this list). */
  budgets: BudgetDef[] = [...BUDGETS];
  #model: MoneyModel | undefined;

  reset(): void {
    const at = new Date(0).toISOString();
    this.records = new Map(LINEAGES.map((id) => [id, { id, sha256: id.padEnd(64, '0'), scopes: [], createdAt: at }]));
    this.current = new Map(LINEAGES.map((id) => [id, id]));
    this.budgets = [...BUDGETS];
  }

  /** The lineage id whose budget key `keyId` is charged to, when its record carries one. */
  carriedBy(keyId: string): string | undefined {
    const record = this.records.get(keyId);
    return record?.budget === undefined ? undefined : keyBudgetScope(record);
  }

  /** `caller` as it calls now: with the current key of its lineage. */
  callerNow(caller: Caller): Caller {
    const keyId = this.current.get(caller.keyId) ?? caller.keyId;
    if (keyId !== caller.keyId && this.carriedBy(keyId) !== undefined)
      this.#model?.note('reserve on a rotated key with its budget');
    return keyId === caller.keyId ? caller : { ...caller, keyId };
  }

  /** Binds the model that counts events (the run's). */
  watch(model: MoneyModel): void {
    this.#model = model;
  }

  step(step: KeyStep, now: number): void {
    const lineage = LINEAGES[step.lineage]!;
    const keyId = this.current.get(lineage)!;
    const record = this.records.get(keyId)!;
    if (step.kind === 'rotateKey') {
      const id = `${lineage}-r${this.records.size}`;
      this.records.set(id, successorRecord(record, { id, sha256: id.padEnd(64, '1'), now }));
      this.current.set(lineage, id);
      this.#model?.note('key rotated');
      return;
    }
    // Given once per lineage (a change of limit while holds are out is the e2e tests' part).
    if (this.carriedBy(keyId) !== undefined) return;
    this.records.set(keyId, { ...record, budget: { usd: usd(step.limit), period: 'hour' } });
    const scope = keyBudgetScope(record);
    if (this.budgets.some((budget) => budget.name === `key ${scope} (carried)`)) return;
    const callingKey = () => this.current.get(lineage)!;
    this.budgets.push({
      name: `key ${scope} (carried)`,
      // Named by the key calling now: the guard finds the budget its record carries.
      get selector() {
        return { scope: 'key' as const, id: callingKey() };
      },
      period: 'hour',
      limit: step.limit,
      applies: (caller) => this.carriedBy(caller.keyId) === scope,
    });
    this.#model?.note('key budget given');
  }
}

/** The run's key store (one run at a time): reset by each run, read by its guards and requests. */
const keyBook = new KeyBook();

// ---- end of keys that carry their budget ----

/** What the runs must have reached, besides matching the model: a search that never gets there proves nothing of it. */
const REACHED = [
  'reserve granted',
  'reserve clamped',
  'reserve refused',
  'reserve refused until rebuilt',
  'extension granted',
  'extension refused',
  'settle above (live)',
  'settle at (live)',
  'settle below (live)',
  'settle below (charged)',
  'expiry',
  'rebuild raised spent',
  'JSON call cut',
  'JSON call whole',
];

/** Budgets that stack (a team, its members, the tenant) each refused some reserve: the blocks without resets reach it. */
const STACKED = ['reserve refused by team', 'reserve refused by member'];

/** `block`: the steps and the run of a block of this test (the common ones without). */
async function checkAgainstModel(
  backend: Backend,
  reached: readonly string[],
  block: { steps?: fc.WeightedArbitrary<Step>[]; makeRun?: RunMaker } = {},
): Promise<void> {
  const seen = new Map<string, number>();
  await fc.assert(
    fc.asyncProperty(stepsOf(backend, block.steps), (steps) => runSteps(backend, steps, seen, block.makeRun)),
    { seed: SEED, numRuns: RUNS ?? backend.runs, ...(PATH ? { path: PATH } : {}) },
  );
  if (process.env.MONEY_MODEL_TALLY) console.log(backend.name, Object.fromEntries([...seen].sort()));
  expect([...REACHED, ...reached].filter((event) => !seen.has(event))).toEqual([]);
}

describe('the money engine matches its reference model', () => {
  let redis: PrivateRedis;

  beforeAll(async () => {
    redis = new PrivateRedis(await freePort());
    await redis.start();
  });

  afterAll(async () => {
    await redis?.stop();
  });

  it('on memory stores (fake clock; a crash loses the store with its process)', async () => {
    await checkAgainstModel(memory, ['settle above (charged)', 'settle at (charged)', ...STACKED]);
  }, 120_000);

  it('on Redis (two processes; data losses, crashes)', async () => {
    const lost = ['settle above (lost)', 'settle below (lost)', 'expiry of a dead process', ...STACKED];
    await checkAgainstModel(
      redisBackend(() => redis),
      lost,
    );
  }, 120_000);

  // Keys that carry their budget (the block above the reached events): the same steps and rotations and budgets given
  // at run time among them.
  it('on memory stores, with keys rotated and given budgets at run time', async () => {
    await checkAgainstModel(memory, [...KEY_EVENTS, ...STACKED], { steps: KEY_STEPS });
  }, 120_000);

  it('on Redis, with keys rotated and given budgets at run time', async () => {
    await checkAgainstModel(
      redisBackend(() => redis),
      [...KEY_EVENTS, ...STACKED],
      { steps: KEY_STEPS },
    );
  }, 120_000);
});

// ---------------------------------------------------------------------------------------------------------------------
// Resets and top-ups, journaled: the guards keep a credit journal (postgresCreditJournal, in PostgreSQL), and resets join
// the steps. A reset forgets spent and credit; a rebuild after a loss or a crash counts from the last reset (the calls
// that finished from it on) and raises credit to the journal's. (Other blocks add their own steps below this one.)
// ---------------------------------------------------------------------------------------------------------------------

const POSTGRES_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** A run whose model journals credit, and which makes resets through the first process's guard. */
class JournaledRun extends Run {
  constructor(system: System, backend: Backend) {
    super(system, backend, new MoneyModel(keyBook.budgets, { journal: true }));
  }

  override async step(step: Step, storeNow: number): Promise<void> {
    if (step.kind !== 'reset') return super.step(step, storeNow);
    const budget = BUDGETS[step.budget]!;
    await this.system.processes[0]!.guard.reset(budget.selector);
    for (const each of namedLike(budget)) this.model.reset(each, this.system.appNow());
  }
}

const journaledSteps: fc.WeightedArbitrary<Step>[] = [
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('reset' as const), budget: fc.nat({ max: BUDGETS.length - 1 }) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('topUp' as const),
      budget: fc.nat({ max: BUDGETS.length - 1 }),
      usd: fc.constantFrom(0.001, 0.0025, 0.004),
    }),
  },
];

/** `backend` with fewer runs, each starting from an empty journal that every process of the run shares. */
function journaled(backend: Backend, runs: number, journal: () => Promise<CreditJournal>): Backend {
  return {
    ...backend,
    name: `${backend.name}, journaled`,
    runs,
    open: async () => backend.open({ creditJournal: await journal() }),
  };
}

describe('resets and top-ups are history: the money engine with a credit journal matches its model', () => {
  const location = { table: `tg_money_model_${randomUUID().replace(/-/g, '').slice(0, 12)}` };
  const pool = new pg.Pool({ connectionString: POSTGRES_URL, max: 2 });
  let redis: PrivateRedis;
  /** The journal's table emptied: each run starts with nothing journaled. */
  const freshJournal = async (): Promise<CreditJournal> => {
    await pool.query(`TRUNCATE ${creditTableName(location)}`).catch((error: { code?: string }) => {
      if (error.code !== '42P01') throw error;
    });
    return postgresCreditJournal(pool, location);
  };
  const reached = ['reset', 'top-up journaled', 'rebuild raised credit'];

  beforeAll(async () => {
    redis = new PrivateRedis(await freePort());
    await redis.start();
  });

  afterAll(async () => {
    await redis?.stop();
    const tables = ['', '_credits', '_outcomes'].map((suffix) => `"${location.table}${suffix}"`);
    await pool.query(`DROP TABLE IF EXISTS ${tables.join(', ')}`);
    await pool.end();
  });

  it('on memory stores (a crash restarts the process: spend since the reset and credit come back from the ledgers)', async () => {
    await checkAgainstModel(
      journaled(memory, 120, freshJournal),
      [...reached, 'rebuild left out a call before a reset', 'settle above (charged)'],
      { steps: journaledSteps, makeRun: (system, backend) => new JournaledRun(system, backend) },
    );
  }, 180_000);

  it('on Redis (two processes; data losses, crashes)', async () => {
    const backend = journaled(
      redisBackend(() => redis),
      50,
      freshJournal,
    );
    await checkAgainstModel(backend, reached, {
      steps: journaledSteps,
      makeRun: (system, backend) => new JournaledRun(system, backend),
    });
  }, 180_000);
});
