// The router's choices and tries, without HTTP: strategies, retries and backoff, breakers, classes, skipped targets.
import { afterEach, describe, expect, it, jest } from '@jest/globals';
import { createPricing } from '@tollgate/core';
import { classifyRequest } from '../src/request-classes.js';
import { createModelRouter, resolveRouterOptions, retryAfterMs, retryDelayMs } from '@tollgate/router';
import type { AttemptResult, ResolvedTarget, RouteFailure, RoutePlan } from '@tollgate/router';
import type { ModelRouterSetup } from '../src/model-router.js';

const pricing = createPricing();
const request = { inputTokens: 100, tools: false, images: false };

interface Script {
  sent: string[];
  delivered: string[];
  failures: RouteFailure[];
}

/** Runs `plan` with each target answering as `answer` says. */
async function runScript(
  router: ReturnType<typeof createModelRouter>,
  plan: RoutePlan,
  answer: (target: ResolvedTarget, call: number) => AttemptResult['kind'],
  unfit: Record<string, string> = {},
): Promise<Script> {
  const script: Script = { sent: [], delivered: [], failures: [] };
  await router.run(plan, {
    prepare: (target) => unfit[target.id],
    send: async (target) => {
      script.sent.push(target.id);
      const kind = answer(target, script.sent.length);
      if (kind === 'answered') return { kind, firstByteMs: 10 };
      if (kind === 'failed') return { kind, reason: 'cut' };
      return { kind, reason: 'HTTP 500', deliver: () => script.delivered.push(target.id) };
    },
    fail: (failure) => script.failures.push(failure),
  });
  return script;
}

function router(setup: ModelRouterSetup) {
  return createModelRouter({ pricing, retry: { attempts: 2, baseDelayMs: 1, maxDelayMs: 2 }, ...setup });
}

const twoTargets = {
  targets: [
    { upstream: 'a', model: 'gpt-4o' },
    { upstream: 'b', model: 'gpt-4o-mini' },
  ],
};

describe('options', () => {
  it('names the faulty field', () => {
    expect(() =>
      resolveRouterOptions({
        modelGroups: { g: { strategy: 'fastest' as 'fallback', targets: [{ upstream: 'a', model: 'm' }] } },
      }),
    ).toThrow(/modelGroups\.g\.strategy must be one of/);
    expect(() => resolveRouterOptions({ modelGroups: { g: { targets: [] } } })).toThrow(
      /modelGroups\.g\.targets must be a non-empty array/,
    );
    expect(() =>
      resolveRouterOptions({ modelGroups: { g: { targets: [{ upstream: 'a', model: 'm', weight: -1 }] } } }),
    ).toThrow(/targets\[0\]\.weight must be a positive number/);
    expect(() => resolveRouterOptions({ retry: { attempts: 1.5 } })).toThrow(
      /retry\.attempts must be a non-negative integer/,
    );
    expect(() => resolveRouterOptions({ circuitBreaker: { cooldown: 5 } as never })).toThrow(
      /circuitBreaker\.cooldown is not an option/,
    );
    expect(() =>
      resolveRouterOptions({
        modelGroups: { g: { targets: [{ upstream: 'a', model: 'm' }] } },
        requestClasses: { auto: { default: 'h' } },
      }),
    ).toThrow(/requestClasses\.auto\.default must name a model group/);
  });

  it('refuses a target whose model has no price', () => {
    expect(() =>
      createModelRouter({ pricing, modelGroups: { g: { targets: [{ upstream: 'a', model: 'no-such-model' }] } } }),
    ).toThrow(/"no-such-model" has no price/);
  });
});

describe('backoff', () => {
  it('waits a random time up to the doubling cap (full jitter), and a provider hint within the cap', () => {
    expect(retryDelayMs(1, 100, 1000, undefined, () => 0.999)).toBe(99);
    expect(retryDelayMs(3, 100, 1000, undefined, () => 0.999)).toBe(399);
    expect(retryDelayMs(9, 100, 1000, undefined, () => 0.5)).toBe(500);
    expect(retryDelayMs(1, 100, 1000, undefined, () => 0)).toBe(0);
    expect(retryDelayMs(1, 100, 1000, 700)).toBe(700);
    expect(retryDelayMs(1, 100, 1000, 5000)).toBe(1000);
  });

  it('reads retry-after-ms, retry-after seconds and retry-after dates', () => {
    expect(retryAfterMs({ 'retry-after-ms': '250', 'retry-after': '9' })).toBe(250);
    expect(retryAfterMs({ 'retry-after': '2' })).toBe(2000);
    expect(retryAfterMs({ 'retry-after': new Date(10_000).toUTCString() }, 4000)).toBe(6000);
    expect(retryAfterMs({ 'retry-after': 'soon' })).toBeUndefined();
    expect(retryAfterMs({})).toBeUndefined();
  });
});

describe('strategies', () => {
  it('fallback keeps the configured order; cheapest puts the lowest estimated cost first', () => {
    const r = router({ modelGroups: { f: twoTargets, c: { strategy: 'cheapest', ...twoTargets } } });
    expect(r.plan({ model: 'f', ...request })!.targets.map((t) => t.model)).toEqual(['gpt-4o', 'gpt-4o-mini']);
    expect(r.plan({ model: 'c', ...request })!.targets.map((t) => t.model)).toEqual(['gpt-4o-mini', 'gpt-4o']);
    expect(r.plan({ model: 'gpt-4o', ...request })).toBeUndefined();
  });

  it('cheapest prices the input estimate and the output cap per target', () => {
    // One model with cheap input and dear output, one the other way round: the request's shape decides.
    const shaped = createPricing({
      models: {
        'reader-model': { provider: 'a', inputPerMTok: 0.1, outputPerMTok: 20 },
        'writer-model': { provider: 'b', inputPerMTok: 5, outputPerMTok: 1 },
      },
    });
    const r = createModelRouter({
      pricing: shaped,
      modelGroups: {
        c: {
          strategy: 'cheapest',
          targets: [
            { upstream: 'a', model: 'reader-model' },
            { upstream: 'b', model: 'writer-model' },
          ],
        },
      },
    });
    expect(r.plan({ model: 'c', ...request, inputTokens: 100_000, outputTokens: 100 })!.targets[0]!.model).toBe(
      'reader-model',
    );
    expect(r.plan({ model: 'c', ...request, inputTokens: 100, outputTokens: 10_000 })!.targets[0]!.model).toBe(
      'writer-model',
    );
  });

  it('cheapest compares at the prices a source loaded since, and at the service tier asked for', () => {
    const live = createPricing({
      models: {
        'steady-model': { provider: 'a', inputPerMTok: 2, outputPerMTok: 2 },
        'flexible-model': {
          provider: 'b',
          inputPerMTok: 3,
          outputPerMTok: 3,
          serviceTiers: { flex: { inputPerMTok: 1, outputPerMTok: 1 } },
        },
      },
    });
    const r = createModelRouter({
      pricing: live,
      modelGroups: {
        c: {
          strategy: 'cheapest',
          targets: [
            { upstream: 'a', model: 'gpt-4o-mini' },
            { upstream: 'b', model: 'gpt-4.1-nano' },
            { upstream: 'a', model: 'steady-model' },
            { upstream: 'b', model: 'flexible-model' },
          ],
        },
      },
    });
    const first = (serviceTier?: string) =>
      r.plan({ model: 'c', ...request, outputTokens: 100, serviceTier })!.targets[0]!.model;
    // Shipped: gpt-4.1-nano ($0.10 / $0.40) is cheaper than gpt-4o-mini ($0.15 / $0.60).
    expect(first()).toBe('gpt-4.1-nano');
    live.loadSource(
      JSON.stringify({
        'gpt-4o-mini': { litellm_provider: 'openai', input_cost_per_token: 1e-8, output_cost_per_token: 1e-8 },
      }),
    );
    expect(first()).toBe('gpt-4o-mini');
    // At flex, the config's own flex prices put flexible-model under steady-model (but still over the source's row).
    const order = r
      .plan({ model: 'c', ...request, outputTokens: 100, serviceTier: 'flex' })!
      .targets.map((t) => t.model);
    expect(order.indexOf('flexible-model')).toBeLessThan(order.indexOf('steady-model'));
    const standard = r.plan({ model: 'c', ...request, outputTokens: 100 })!.targets.map((t) => t.model);
    expect(standard.indexOf('steady-model')).toBeLessThan(standard.indexOf('flexible-model'));
  });

  it('lowest-latency puts the target with the smaller moving average of time to first byte first', async () => {
    const r = router({ modelGroups: { l: { strategy: 'lowest-latency', ...twoTargets } } });
    const plan = r.plan({ model: 'l', ...request })!;
    await r.run(plan, {
      prepare: () => undefined,
      send: async () => ({ kind: 'answered', firstByteMs: 500 }),
      fail: () => undefined,
    });
    // The slow first target measured, the unmeasured one goes first; once measured faster, it stays first.
    const next = r.plan({ model: 'l', ...request })!;
    expect(next.targets[0]!.model).toBe('gpt-4o-mini');
    await r.run(next, {
      prepare: () => undefined,
      send: async () => ({ kind: 'answered', firstByteMs: 50 }),
      fail: () => undefined,
    });
    expect(r.plan({ model: 'l', ...request })!.targets[0]!.model).toBe('gpt-4o-mini');
    expect(r.health().map((report) => report.ttfbMs)).toEqual([500, 50]);
  });

  it('lowest-latency blends the probes’ latency with live traffic’s, and ranks idle targets by their probes', async () => {
    const probed: Record<string, number | undefined> = { 'gpt-4o': 40, 'gpt-4o-mini': 300 };
    const checks = { down: () => false, latencyMs: (target: ResolvedTarget) => probed[target.model] };
    const r = router({ checks, modelGroups: { l: { strategy: 'lowest-latency', ...twoTargets } } });
    // Neither has served traffic: the probes alone order them.
    expect(r.plan({ model: 'l', ...request })!.targets.map((t) => t.model)).toEqual(['gpt-4o', 'gpt-4o-mini']);
    // gpt-4o answers real calls slowly: (40 + 1000) / 2 = 520 ms, behind gpt-4o-mini's probed 300 ms.
    await r.run(r.plan({ model: 'l', ...request })!, {
      prepare: () => undefined,
      send: async () => ({ kind: 'answered', firstByteMs: 1000 }),
      fail: () => undefined,
    });
    expect(r.plan({ model: 'l', ...request })!.targets[0]!.model).toBe('gpt-4o-mini');
    // Its probes alone cannot undo what live traffic measured: (10 + 1000) / 2 = 505, still behind 300.
    probed['gpt-4o'] = 10;
    expect(r.plan({ model: 'l', ...request })!.targets[0]!.model).toBe('gpt-4o-mini');
    // gpt-4o-mini's probes degrade past it: (10 + 1000) / 2 = 505 < 900.
    probed['gpt-4o-mini'] = 900;
    expect(r.plan({ model: 'l', ...request })!.targets[0]!.model).toBe('gpt-4o');
  });

  it.each(['fallback', 'cheapest', 'lowest-latency', 'weighted'] as const)(
    '%s skips the target it would choose when its health checks hold it down, and tries it only when all are down',
    async (strategy) => {
      const down = new Set<string>();
      const checks = { down: (target: ResolvedTarget) => down.has(target.id), latencyMs: () => undefined };
      const r = router({ checks, random: () => 0.5, modelGroups: { g: { strategy, ...twoTargets } } });
      const [chosen, other] = r.plan({ model: 'g', ...request })!.targets.map((target) => target.id);
      down.add(chosen!);
      expect((await runScript(r, r.plan({ model: 'g', ...request })!, () => 'answered')).sent).toEqual([other]);
      // Every target down: the least bad is still tried rather than the request refused (a probe can be wrong).
      down.add(other!);
      expect((await runScript(r, r.plan({ model: 'g', ...request })!, () => 'answered')).sent).toHaveLength(1);
    },
  );

  it('weighted spreads the first choice by weight', () => {
    let next = 0;
    const draws = [0.1, 0.5, 0.79, 0.8, 0.95];
    const r = router({
      random: () => draws[next++]!,
      modelGroups: {
        w: {
          strategy: 'weighted',
          targets: [
            { upstream: 'a', model: 'gpt-4o', weight: 4 },
            { upstream: 'b', model: 'gpt-4o-mini', weight: 1 },
          ],
        },
      },
    });
    const firsts = draws.map(() => r.plan({ model: 'w', ...request })!.targets[0]!.model);
    expect(firsts).toEqual(['gpt-4o', 'gpt-4o', 'gpt-4o', 'gpt-4o-mini', 'gpt-4o-mini']);
  });
});

describe('tries', () => {
  it('falls back to the next target, and retries a lone target', async () => {
    const r = router({ modelGroups: { f: twoTargets, solo: { targets: [{ upstream: 'a', model: 'gpt-4o' }] } } });
    const fallback = await runScript(r, r.plan({ model: 'f', ...request })!, (target) =>
      target.upstream === 'a' ? 'retryable' : 'answered',
    );
    expect(fallback.sent).toEqual(['a/gpt-4o', 'b/gpt-4o-mini']);
    const lone = await runScript(r, r.plan({ model: 'solo', ...request })!, (_target, call) =>
      call < 3 ? 'retryable' : 'answered',
    );
    expect(lone.sent).toEqual(['a/gpt-4o', 'a/gpt-4o', 'a/gpt-4o']);
    expect(lone.delivered).toEqual([]);
  });

  it('passes the last failure on when the tries run out, and stops at a failure already answered', async () => {
    const r = router({ modelGroups: { f: twoTargets } });
    const exhausted = await runScript(r, r.plan({ model: 'f', ...request })!, () => 'retryable');
    expect(exhausted.sent).toHaveLength(3);
    expect(exhausted.delivered).toEqual(['a/gpt-4o']);
    const cut = await runScript(r, r.plan({ model: 'f', ...request })!, () => 'failed');
    expect(cut.sent).toEqual(['a/gpt-4o']);
    expect(cut.delivered).toEqual([]);
    expect(cut.failures).toEqual([]);
  });

  it('skips a target that cannot take the request, without spending a try', async () => {
    const r = router({ modelGroups: { f: twoTargets } });
    const skipped = await runScript(r, r.plan({ model: 'f', ...request })!, () => 'answered', {
      'a/gpt-4o': 'no translation',
    });
    expect(skipped.sent).toEqual(['b/gpt-4o-mini']);
    const none = await runScript(r, r.plan({ model: 'f', ...request })!, () => 'answered', {
      'a/gpt-4o': 'x',
      'b/gpt-4o-mini': 'y',
    });
    expect(none.failures).toEqual([
      { status: 502, message: 'No target of "f" could take the request: a/gpt-4o: x; b/gpt-4o-mini: y.' },
    ]);
  });
});

describe('circuit breakers', () => {
  afterEach(() => {
    jest.useRealTimers();
  });

  it('opens after the failure threshold, refuses at once while open, and lets one probe through after the cooldown', async () => {
    // The breakers read Date.now(): jest's clock, moved by the test (turns of the event loop stay real).
    jest.useFakeTimers({
      now: Date.UTC(2026, 10, 24, 9, 0),
      doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'],
    });
    const r = router({
      retry: { attempts: 0 },
      circuitBreaker: { failureThreshold: 2, cooldownMs: 80 },
      modelGroups: { solo: { targets: [{ upstream: 'a', model: 'gpt-4o' }] } },
    });
    const plan = () => r.plan({ model: 'solo', ...request })!;
    await runScript(r, plan(), () => 'retryable');
    await runScript(r, plan(), () => 'retryable');
    expect(r.health()[0]!.breaker).toBe('open');
    const refused = await runScript(r, plan(), () => 'answered');
    expect(refused.sent).toEqual([]);
    expect(refused.failures[0]).toMatchObject({ status: 503 });
    // Open for its whole cooldown: a millisecond before its end still refused.
    jest.advanceTimersByTime(79);
    expect((await runScript(r, plan(), () => 'answered')).sent).toEqual([]);
    jest.advanceTimersByTime(1);
    // Two requests at once: the probe goes, the other is refused while it runs.
    let finishProbe!: (result: AttemptResult) => void;
    const probe = r.run(plan(), {
      prepare: () => undefined,
      send: () => new Promise((resolve) => (finishProbe = resolve)),
      fail: () => undefined,
    });
    await new Promise((resolve) => setImmediate(resolve));
    const during = await runScript(r, plan(), () => 'answered');
    expect(during.sent).toEqual([]);
    finishProbe({ kind: 'answered', firstByteMs: 5 });
    await probe;
    expect(r.health()[0]!.breaker).toBe('closed');
  });

  it('opens on a failure rate over the window too', async () => {
    const r = router({
      retry: { attempts: 0 },
      circuitBreaker: { failureThreshold: 100, failureRate: 0.5, minimumCalls: 4, windowMs: 10_000 },
      modelGroups: { solo: { targets: [{ upstream: 'a', model: 'gpt-4o' }] } },
    });
    const plan = () => r.plan({ model: 'solo', ...request })!;
    for (const kind of ['answered', 'retryable', 'answered', 'retryable', 'retryable'] as const)
      await runScript(r, plan(), () => kind);
    expect(r.health()[0]!.breaker).toBe('open');
  });

  it('counts every call and failure, names the last failure when it opens, and counts a transport that throws', async () => {
    const opened: { target: string; reason: string | undefined }[] = [];
    const r = router({
      retry: { attempts: 0 },
      circuitBreaker: { failureThreshold: 3, cooldownMs: 60_000 },
      modelGroups: { solo: { targets: [{ upstream: 'a', model: 'gpt-4o' }] } },
      onBreakerOpen: (target, reason) => opened.push({ target: target.id, reason }),
    });
    const plan = () => r.plan({ model: 'solo', ...request })!;
    const answered = await runScript(r, plan(), () => 'answered');
    expect(answered.sent).toEqual(['a/gpt-4o']);
    expect(r.health()[0]).toMatchObject({ breaker: 'closed', calls: 1, failures: 0, ttfbMs: 10 });
    // A failed result is handed back to the router as it came (its deliver runs), and counted.
    const failed = await runScript(r, plan(), () => 'retryable');
    expect(failed.delivered).toEqual(['a/gpt-4o']);
    expect(r.health()[0]).toMatchObject({ calls: 2, failures: 1, lastFailure: 'HTTP 500' });
    // A transport that throws: the client still gets an answer (502), and the breaker counts the failure.
    const failures: RouteFailure[] = [];
    await r.run(plan(), {
      prepare: () => undefined,
      send: () => Promise.reject(new Error('socket hang up')),
      fail: (failure) => failures.push(failure),
    });
    expect(failures).toEqual([
      expect.objectContaining({ status: 502, message: expect.stringContaining('socket hang up') }),
    ]);
    expect(r.health()[0]!.breaker).toBe('closed');
    await runScript(r, plan(), () => 'failed');
    expect(r.health()[0]).toMatchObject({ breaker: 'open', calls: 4, failures: 2, lastFailure: 'cut' });
    expect(opened).toEqual([{ target: 'a/gpt-4o', reason: 'cut' }]);
  });
});

describe('request classes', () => {
  it('picks the first rule that holds, else the default', () => {
    const config = resolveRouterOptions({
      modelGroups: {
        quick: { targets: [{ upstream: 'a', model: 'gpt-4o-mini' }] },
        deep: { targets: [{ upstream: 'a', model: 'gpt-4o' }] },
        vision: { targets: [{ upstream: 'b', model: 'gpt-4o' }] },
      },
      requestClasses: {
        auto: {
          rules: [
            { images: true, group: 'vision' },
            { minInputTokens: 2000, group: 'deep' },
            { header: 'code', group: 'deep' },
            { route: '/v1/messages', tools: true, group: 'deep' },
          ],
          default: 'quick',
        },
      },
    });
    const auto = config.classes.get('auto')!;
    const pick = (traits: Partial<Parameters<typeof classifyRequest>[1]>) =>
      classifyRequest(auto, { ...request, ...traits }).name;
    expect(pick({})).toBe('quick');
    expect(pick({ images: true, inputTokens: 5000 })).toBe('vision');
    expect(pick({ inputTokens: 2000 })).toBe('deep');
    expect(pick({ requestedClass: 'code' })).toBe('deep');
    expect(pick({ tools: true })).toBe('quick');
    expect(pick({ tools: true, route: '/v1/messages' })).toBe('deep');
  });
});
