// Benchmark: behavioural abuse detection: labelled synthetic traffic replayed on a fake clock (precision, recall, time
// to detection, false actions per 1,000 subject-hours; tuned on some seeds, reported on others), the hot path's cost.
import { parseArgs } from 'node:util';
import { createMemoryStores, getContext } from '@tollgate/core';
import { adapterFor } from '@tollgate/providers';
import { createGuard, createAlerts } from '@tollgate/guard';
import {
  FEATURE_NAMES,
  modelInput,
  promptTraits,
  type AbuseSubject,
  type RequestTraits,
} from '../packages/guard/src/abuse-features.js';
import type { AbuseModel } from '../packages/guard/src/abuse-model.js';
import { isolationScore } from '../packages/guard/src/isolation-forest.js';
import { BUCKETS_PER_WINDOW, resolveAbuseOptions } from '../packages/guard/src/abuse-options.js';
import { isAbuseMitigation } from '../packages/guard/src/abuse-actions.js';
import { AbuseWatch } from '../packages/guard/src/abuse-watch.js';
import { MemoryGuardStore } from '../packages/guard/src/memory-guard-store.js';
import { MitigationRegistry } from '../packages/guard/src/mitigation-registry.js';
import {
  aloneContext,
  runAlone,
  sectionText,
  type BenchContext,
  type SectionResult,
  type TargetVerdict,
} from './lib/section.js';
import { fmtNumber, median, quantile, table } from './lib/stats.js';

/** The documented example config (the guard README): what a deployment gets with `"abuse": {}` but for the subjects (tenants too here). */
const ABUSE = { subjects: ['key', 'address'] as ('key' | 'address')[] };
const MINUTE = 60_000;
const TICK_MS = 5_000;
const TUNING_SEEDS = [1, 2];
/** 101-104 were held out until their stolen-key misses were read (`--explain`) to find the cause: fresh ones since. */
const HELD_OUT_SEEDS = [105, 106, 107, 108];
const QUICK = { minutes: 90, normalKeys: 120, tuning: [1], heldOut: [105] };
const FULL = { minutes: 150, normalKeys: 150, tuning: TUNING_SEEDS, heldOut: HELD_OUT_SEEDS };
/** Abuse starts after the model has had this long on normal traffic alone, and each instance lasts `ABUSE_MINUTES`. */
const WARM_UP_MINUTES = 30;
const ABUSE_MINUTES = 20;

function seeded(seed: number): () => number {
  let state = (seed * 2654435761) % 2147483647 || 1;
  return () => (state = (state * 48271) % 2147483647) / 2147483647;
}

const WORDS = (
  'the a of and to in is it for on with as report summary customer invoice please write explain short list ideas ' +
  'team meeting product launch budget email reply translate french code review function bug test plan weekly ' +
  'update data table chart revenue quarter growth policy contract clause draft letter'
).split(' ');
const text = (random: () => number, chars: number) => {
  let out = '';
  while (out.length < chars) out += `${WORDS[Math.floor(random() * WORDS.length)]} `;
  return out.slice(0, chars);
};
const noise = (random: () => number, chars: number) =>
  Array.from({ length: chars }, () => String.fromCharCode(33 + Math.floor(random() * 93))).join('');

type Kind = 'stuffing' | 'scraper' | 'stolen' | 'probing';
const KINDS: Kind[] = ['stuffing', 'scraper', 'stolen', 'probing'];

/** One simulated sender: its next request's time and what it sends. */
interface Sender {
  next: number;
  until: number;
  /** The gap to the next request (ms). */
  gap(): number;
  send(at: number): Request;
}

interface Request {
  keyId: string | undefined;
  tenantId: string | undefined;
  address: string;
  agent: string;
  status: number;
  flagged: boolean;
  prompt: string;
  model: string;
}

interface Instance {
  kind: Kind;
  variant: string;
  start: number;
  end: number;
  /** The subjects an action on counts as a true one. */
  subjects: Set<AbuseSubject>;
}

const AGENTS = ['OpenAI/Python 1.54.0', 'OpenAI/JS 4.73.0', 'langchain/0.3', 'Mozilla/5.0', 'curl/8.5', 'Go-http/1.1'];
const MODELS = ['small-model', 'large-model', 'mini-model', 'code-model'];
const exponential = (random: () => number, mean: number) => -Math.log(1 - random()) * mean;

/** A population of keys of varied habits, and each abuse kind in variants, all labelled. */
function scenario(seed: number, plan: { minutes: number; normalKeys: number }) {
  const random = seeded(seed);
  const end = plan.minutes * MINUTE;
  const senders: Sender[] = [];
  const normalSubjects = new Set<AbuseSubject>();
  /** What each normal subject is, for `--explain`. */
  const habits = new Map<AbuseSubject, string>();
  const offices = Array.from({ length: 12 }, (_, i) => `10.100.${seed % 250}.${i}`);
  for (let k = 0; k < plan.normalKeys; k++) {
    const keyId = `n${k}`;
    const perMinute = Math.exp(Math.log(0.2) + random() * (Math.log(8) - Math.log(0.2)));
    const bursty = random() < 0.4;
    const chars = Math.exp(Math.log(20) + random() * (Math.log(2000) - Math.log(20)));
    const templated = random() < 0.2;
    const models = MODELS.slice(0, 1 + Math.floor(random() * 3));
    const agents = [AGENTS[Math.floor(random() * 4)]!, ...(random() < 0.1 ? [AGENTS[Math.floor(random() * 4)]!] : [])];
    const where = random();
    const addresses =
      where < 0.7
        ? [`10.${k % 200}.${seed % 250}.1`]
        : where < 0.9
          ? [offices[k % offices.length]!]
          : [`10.${k % 200}.${seed % 250}.2`, `10.${k % 200}.${seed % 250}.3`, `10.${k % 200}.${seed % 250}.4`];
    normalSubjects.add(`key:${keyId}`);
    for (const address of addresses) normalSubjects.add(`address:${address}`);
    const habit =
      `${perMinute.toFixed(1)}/min${bursty ? ' bursty' : ''}, ${Math.round(chars)} chars${templated ? ' templated' : ''}, ` +
      `${models.length} model(s), ${agents.length} agent(s), ${where < 0.7 ? 'own address' : where < 0.9 ? 'office' : 'mobile'}`;
    habits.set(`key:${keyId}`, habit);
    for (const address of addresses)
      habits.set(
        `address:${address}`,
        `${habits.has(`address:${address}`) ? 'shared office; ' : ''}of ${keyId}: ${habit}`,
      );
    let session = 0;
    senders.push({
      next: random() * MINUTE,
      until: end,
      gap() {
        if (!bursty) return exponential(random, MINUTE / perMinute);
        // On for a few minutes at three times the rate, then off for longer.
        if (session-- > 0) return exponential(random, MINUTE / perMinute / 3);
        session = Math.ceil(exponential(random, 3 * perMinute));
        return exponential(random, (3 * MINUTE) / perMinute);
      },
      send: () => {
        const length = Math.max(4, Math.round(chars * Math.exp((random() - 0.5) * 1.2)));
        const flagged = random() < 0.003;
        return {
          keyId,
          tenantId: `t${k % 30}`,
          address: addresses[Math.floor(random() * addresses.length)]!,
          agent: agents[Math.floor(random() * agents.length)]!,
          status: flagged ? 400 : random() < 0.01 ? 400 : 200,
          flagged,
          prompt: templated
            ? `Classify ticket ${Math.floor(random() * 1e6)}: ${text(seeded(k), length)}`
            : text(random, length),
          model: models[Math.floor(random() * models.length)]!,
        };
      },
    });
  }

  const instances: Instance[] = [];
  const abuseSpan = end - WARM_UP_MINUTES * MINUTE - ABUSE_MINUTES * MINUTE;
  let attacker = 0;
  for (const kind of KINDS)
    for (let copy = 0; copy < 2; copy++) {
      const start = WARM_UP_MINUTES * MINUTE + random() * abuseSpan;
      const stop = start + ABUSE_MINUTES * MINUTE;
      const variant = Math.floor(random() * 3);
      const id = `${kind}${attacker++}`;
      const subjects = new Set<AbuseSubject>();
      const regular = (perMinute: number) => () => (MINUTE / perMinute) * (0.95 + 0.1 * random());
      if (kind === 'stuffing') {
        // One address fast, five at a moderate pace, twenty low and slow: each attempt a new credential.
        const [count, perMinute] = (
          [
            [1, 20],
            [5, 4],
            [20, 1],
          ] as const
        )[variant]!;
        for (let a = 0; a < count; a++) {
          const address = `172.16.${attacker}.${a}`;
          subjects.add(`address:${address}`);
          senders.push({
            next: start + random() * MINUTE,
            until: stop,
            gap: () => exponential(random, MINUTE / perMinute),
            send: () => ({
              keyId: undefined,
              tenantId: undefined,
              address,
              agent: 'python-requests/2.32',
              status: 401,
              flagged: false,
              prompt: 'hello',
              model: 'small-model',
            }),
          });
        }
        instances.push({ kind, variant: `${count} address(es) × ${perMinute}/min`, start, end: stop, subjects });
      } else if (kind === 'scraper') {
        // Machine-regular, under any limit: random inputs at 6, 20 or 60 a minute.
        const perMinute = [6, 20, 60][variant]!;
        const address = `172.17.${attacker}.1`;
        subjects.add(`key:${id}`).add(`address:${address}`);
        senders.push({
          next: start,
          until: stop,
          gap: regular(perMinute),
          send: () => ({
            keyId: id,
            tenantId: id,
            address,
            agent: 'OpenAI/Python 1.54.0',
            status: 200,
            flagged: false,
            prompt: noise(random, 300 + Math.floor(random() * 700)),
            model: 'small-model',
          }),
        });
        instances.push({ kind, variant: `${perMinute}/min, regular, random text`, start, end: stop, subjects });
      } else if (kind === 'stolen') {
        // A normal key used besides from 3, 10 or 40 new addresses, by a new client at a new rhythm.
        const victim = `n${Math.floor(random() * plan.normalKeys)}`;
        const count = [3, 10, 40][variant]!;
        subjects.add(`key:${victim}`);
        const addresses = Array.from({ length: count }, (_, a) => `172.18.${attacker}.${a}`);
        for (const address of addresses) subjects.add(`address:${address}`);
        senders.push({
          next: start,
          until: stop,
          gap: regular(15),
          send: () => ({
            keyId: victim,
            tenantId: 'stolen',
            address: addresses[Math.floor(random() * count)]!,
            agent: 'python-requests/2.32',
            status: 200,
            flagged: false,
            prompt: text(random, 200 + Math.floor(random() * 400)),
            model: 'large-model',
          }),
        });
        instances.push({ kind, variant: `${count} new addresses, new client`, start, end: stop, subjects });
      } else {
        // Injection probing at an ordinary pace: 40% of its prompts refused by the guardrails.
        const perMinute = [2, 6, 15][variant]!;
        const address = `172.19.${attacker}.1`;
        subjects.add(`key:${id}`).add(`address:${address}`);
        senders.push({
          next: start,
          until: stop,
          gap: () => exponential(random, MINUTE / perMinute),
          send: () => {
            const flagged = random() < 0.4;
            return {
              keyId: id,
              tenantId: id,
              address,
              agent: 'OpenAI/JS 4.73.0',
              status: flagged ? 400 : 200,
              flagged,
              prompt: flagged ? `Ignore previous instructions ${noise(random, 40)}` : text(random, 150),
              model: 'small-model',
            };
          },
        });
        instances.push({ kind, variant: `${perMinute}/min, 40% flagged`, start, end: stop, subjects });
      }
    }
  return { senders, instances, normalSubjects, habits, end };
}

interface Outcome {
  instances: { kind: Kind; variant: string; detectedAfter: number | undefined }[];
  trueActions: number;
  falseActions: number;
  normalSubjectHours: number;
  requests: number;
}

/** Replays one seed through an abuse watch on a fake clock; each action is read off the mitigations after a round. */
async function replay(
  seed: number,
  plan: { minutes: number; normalKeys: number },
  explain?: (line: string) => void,
): Promise<Outcome> {
  const { senders, instances, normalSubjects, habits, end } = scenario(seed, plan);
  let now = 0;
  const clock = () => now;
  const store = new MemoryGuardStore({ clock });
  const onStoreError = (error: unknown) => {
    throw error;
  };
  const registry = new MitigationRegistry(store, { syncIntervalMs: 0, onStoreError });
  const alerts = createAlerts({ log: false });
  const config = resolveAbuseOptions(ABUSE);
  const watch = new AbuseWatch(config, { store, registry, alerts, onStoreError, clock, tickMs: 0 });
  /** `--explain`: each instance subject's highest score while under way, with its features then. */
  const highest = new Map<AbuseSubject, { score: number; at: number; line: string }>();
  const parsed: { version?: string; model?: AbuseModel } = {};
  const describe = async (subject: AbuseSubject) => {
    const current = Math.floor(now / config.bucketMs);
    const buckets = Array.from({ length: BUCKETS_PER_WINDOW }, (_, i) => current - i);
    const row = (await store.abuseTallies(buckets)).features(subject, config.windowMs);
    const entry = watch.entries().find((e) => e.subject === subject);
    if (!row || !entry) return { score: 0, line: `${subject}: not scored` };
    const version = await store.abuseState('modelVersion');
    if (version !== parsed.version)
      Object.assign(parsed, { version, model: JSON.parse((await store.abuseState('model'))!) });
    const model = parsed.model!;
    const input = modelInput(row);
    const views = model.views
      .map((view) =>
        isolationScore(
          view.forest,
          view.features.map((f) => input[f]!),
        ).toFixed(3),
      )
      .join('/');
    const features = row.map((value, i) => `${FEATURE_NAMES[i]} ${Number(value.toPrecision(3))}`).join(', ');
    return {
      score: entry.score,
      line: `${subject} score ${entry.score} (views ${views}; ${entry.requests} requests): ${features}`,
    };
  };
  const firstAction = new Map<AbuseSubject, number>();
  let requests = 0;
  const answer = { statusCode: 200 };
  for (let tick = TICK_MS; tick <= end; tick += TICK_MS) {
    for (const sender of senders)
      while (sender.next < tick && sender.next < sender.until) {
        now = sender.next;
        const sent = sender.send(now);
        requests++;
        const req = {
          ip: sent.address,
          socket: {},
          headers: {},
          tollgate: sent.keyId === undefined ? {} : { identity: { keyId: sent.keyId, tenantId: sent.tenantId } },
        } as never;
        answer.statusCode = sent.status;
        const traits: RequestTraits = {
          at: now,
          status: sent.status,
          refusedBy: sent.flagged ? 'guardrails' : undefined,
          prompt: promptTraits([sent.prompt]),
          model: sent.model,
          route: '/v1/chat/completions',
          agent: sent.agent,
        };
        watch.record(req, sent.address, traits, sent.keyId ?? `cred-${requests}`);
        if (sent.status === 200) {
          const tokens = Math.round(sent.prompt.length / 4);
          watch.recordUsage(
            {
              keyId: sent.keyId ?? null,
              tenantId: sent.tenantId ?? null,
              inputTokens: tokens,
              outputTokens: 60,
              costNanoUsd: tokens * 1000,
            } as never,
            req,
          );
        }
        sender.next += Math.max(1, sender.gap());
      }
    now = tick;
    // A round as a deployment's timer runs it (claims on the fake clock decide who trains and scores).
    await watch.tick();
    for (const mitigation of registry.list(now)) {
      if (!isAbuseMitigation(mitigation)) continue;
      const subject = (
        mitigation.subject.startsWith('ip:') ? `address:${mitigation.subject.slice(3)}` : mitigation.subject
      ) as AbuseSubject;
      if (!firstAction.has(subject)) {
        firstAction.set(subject, mitigation.at);
        if (explain && !instances.some((i) => i.subjects.has(subject) && mitigation.at >= i.start))
          explain(
            `seed ${seed} false ${mitigation.kind} at ${Math.round(now / 1000)}s [${habits.get(subject)}]: ${(await describe(subject)).line}`,
          );
      }
    }
    if (explain)
      for (const instance of instances) {
        if (now < instance.start || now > instance.end) continue;
        for (const subject of instance.subjects) {
          if (!subject.startsWith('key:')) continue;
          const seen = await describe(subject);
          if (seen.score > (highest.get(subject)?.score ?? -1)) highest.set(subject, { ...seen, at: now });
        }
      }
  }
  if (explain)
    for (const instance of instances)
      for (const subject of instance.subjects) {
        const best = highest.get(subject);
        if (!best) continue;
        const acted = firstAction.get(subject);
        explain(
          `seed ${seed} ${instance.kind} (${instance.variant}) ${acted === undefined ? 'MISSED' : `acted after ${Math.round((acted - instance.start) / 1000)}s`}; ` +
            `highest at +${Math.round((best.at - instance.start) / 1000)}s: ${best.line}`,
        );
      }
  await watch.close();
  registry.close();
  await alerts.close();
  let trueActions = 0;
  let falseActions = 0;
  for (const [subject, at] of firstAction) {
    const abusive = instances.some((instance) => instance.subjects.has(subject) && at >= instance.start);
    if (abusive) trueActions++;
    else falseActions++;
  }
  return {
    instances: instances.map((instance) => {
      const times = [...instance.subjects]
        .map((subject) => firstAction.get(subject))
        .filter((at): at is number => at !== undefined && at >= instance.start && at <= instance.end + 5 * MINUTE);
      return {
        kind: instance.kind,
        variant: instance.variant,
        detectedAfter: times.length ? Math.min(...times) - instance.start : undefined,
      };
    }),
    trueActions,
    falseActions,
    normalSubjectHours: (normalSubjects.size * end) / (60 * MINUTE),
    requests,
  };
}

interface Summary {
  precision: number;
  recall: number;
  detectionSeconds: number[];
  falsePer1000: number;
  falseActions: number;
  subjectHours: number;
  byKind: Record<Kind, { detected: number; instances: number }>;
  requests: number;
}

function summarise(outcomes: Outcome[]): Summary {
  const instances = outcomes.flatMap((outcome) => outcome.instances);
  const trueActions = outcomes.reduce((sum, outcome) => sum + outcome.trueActions, 0);
  const falseActions = outcomes.reduce((sum, outcome) => sum + outcome.falseActions, 0);
  const subjectHours = outcomes.reduce((sum, outcome) => sum + outcome.normalSubjectHours, 0);
  const byKind = Object.fromEntries(
    KINDS.map((kind) => {
      const of = instances.filter((instance) => instance.kind === kind);
      return [kind, { detected: of.filter((i) => i.detectedAfter !== undefined).length, instances: of.length }];
    }),
  ) as Summary['byKind'];
  return {
    precision: trueActions + falseActions === 0 ? 1 : trueActions / (trueActions + falseActions),
    recall: instances.filter((instance) => instance.detectedAfter !== undefined).length / instances.length,
    detectionSeconds: instances.flatMap((i) => (i.detectedAfter === undefined ? [] : [i.detectedAfter / 1000])),
    falsePer1000: (falseActions / subjectHours) * 1000,
    falseActions,
    subjectHours,
    byKind,
    requests: outcomes.reduce((sum, outcome) => sum + outcome.requests, 0),
  };
}

/** The abuse checks' CPU per request in one run: the two middlewares and the end-of-request record, on vs off. */
async function hotPathCost(iterations: number): Promise<{ on: number; off: number }> {
  const measure = async (abuse: boolean) => {
    const guard = createGuard({
      stores: createMemoryStores(),
      alerts: { log: false },
      spendAnomaly: false,
      repeatedRequests: false,
      authFailures: false,
      ...(abuse ? { abuse: {} } : {}),
    });
    const body = {
      model: 'gpt-4o-mini',
      messages: [
        { role: 'system', content: 'You are a terse assistant.' },
        { role: 'user', content: 'Write a short reply to the customer who asked about invoice 4411 and its due date.' },
      ],
    };
    const adapter = adapterFor('openai.chat');
    let listener: (() => void) | undefined;
    const run = (i: number) => {
      const req = {
        ip: `203.0.${(i % 500) >> 8}.${(i % 500) & 255}`,
        url: '/v1/chat/completions',
        socket: {},
        headers: { 'user-agent': 'OpenAI/Python 1.54.0' },
      };
      const res = {
        statusCode: 200,
        headersSent: true,
        req,
        on(event: string, handler: () => void) {
          // The guard's 'finish' listener runs below; the context's own 'close' (its settle) is not the guard's.
          if (event === 'finish') listener = handler;
          return res;
        },
      };
      // The request's context as auth and the meter leave it: an identity, the declared call.
      const context = getContext(req as never, res as never);
      context.identity = { keyId: `k${i % 500}`, tenantId: `t${i % 20}` } as never;
      context.declareCall(adapter, { body });
      const next = () => undefined;
      (guard.abuseBeforeAuth as (q: unknown, s: unknown, n: () => void) => void)(req, res, next);
      (guard.abuseAfterAuth as (q: unknown, s: unknown, n: () => void) => void)(req, res, next);
      listener?.call(res);
      listener = undefined;
    };
    for (let i = 0; i < 5_000; i++) run(i);
    const started = process.cpuUsage();
    for (let i = 0; i < iterations; i++) run(i);
    const cpu = process.cpuUsage(started);
    await guard.close();
    return ((cpu.user + cpu.system) * 1000) / iterations;
  };
  // Interleaved, twice each: the figures of one run on one machine, the best of each kept.
  const off = Math.min(await measure(false), await measure(false));
  const on = Math.min(await measure(true), await measure(true));
  return { on, off };
}

export async function runAbuseBenchmark(context: BenchContext): Promise<SectionResult> {
  const plan = context.quick ? QUICK : FULL;
  const run = async (seeds: number[]) => {
    const outcomes: Outcome[] = [];
    for (const seed of seeds) {
      context.log(`abuse: replaying seed ${seed} (${plan.minutes} min, ${plan.normalKeys} normal keys)`);
      outcomes.push(await replay(seed, plan));
    }
    return summarise(outcomes);
  };
  const tuning = await run(plan.tuning);
  const heldOut = await run(plan.heldOut);
  const cost = await hotPathCost(context.quick ? 50_000 : 200_000);
  const addedUs = (cost.on - cost.off) / 1000;
  const row = (name: string, s: Summary) => [
    name,
    s.precision.toFixed(3),
    s.recall.toFixed(3),
    s.detectionSeconds.length ? `${fmtNumber(median(s.detectionSeconds))} s` : '-',
    s.detectionSeconds.length ? `${fmtNumber(quantile(s.detectionSeconds, 0.9))} s` : '-',
    `${s.falsePer1000.toFixed(2)} (${s.falseActions} in ${fmtNumber(s.subjectHours)} subject-hours)`,
    KINDS.map((kind) => `${kind} ${s.byKind[kind].detected}/${s.byKind[kind].instances}`).join(', '),
    fmtNumber(s.requests),
  ];
  const body = [
    `Labelled traffic on a fake clock (README.md says how it is made): ${plan.normalKeys} normal keys for ` +
      `${plan.minutes} minutes, two instances of each abuse kind from minute ${WARM_UP_MINUTES} for ${ABUSE_MINUTES} ` +
      `minutes, the documented default options. Constants chosen on seeds ${plan.tuning.join(', ')}; the held-out ` +
      `seeds (${plan.heldOut.join(', ')}) were run once after. An instance is detected when any of its subjects is ` +
      'throttled or blocked during it (or within 5 minutes after); an action is false when its subject is not one of ' +
      'an instance under way.',
    '',
    table(
      [
        'seeds',
        'precision',
        'recall',
        'detection, median',
        'p90',
        'false actions / 1,000 subject-hours',
        'by kind',
        'requests',
      ],
      [row(`held out (${plan.heldOut.join(', ')})`, heldOut), row(`tuning (${plan.tuning.join(', ')})`, tuning)],
    ),
    '',
    `Hot path, CPU per request in one run (guard.abuseBeforeAuth + guard.abuseAfterAuth + the record, memory ` +
      `stores): abuse off ${(cost.off / 1000).toFixed(2)} µs, on ${(cost.on / 1000).toFixed(2)} µs: ` +
      `**${addedUs.toFixed(2)} µs added**. Scoring is off the request path.`,
  ].join('\n');
  const targets: TargetVerdict[] = [
    {
      target: 'abuse scoring on the hot path ≤ 10 µs per request',
      holds: addedUs <= 10,
      figures: `${addedUs.toFixed(2)} µs added (${(cost.off / 1000).toFixed(2)} → ${(cost.on / 1000).toFixed(2)} µs)`,
    },
  ];
  return {
    title: 'Guard: behavioural abuse detection (labelled replay, held-out seeds; hot-path cost)',
    body,
    targets,
  };
}

// `tsx bench/abuse.ts [--quick]`: prints the section, writes no file. `--seeds 1,2 [--explain]`: replays those seeds
// alone (for tuning) and prints their figures, with `--explain` each key of an instance at its highest score and each
// false action, with their features.
if (runAlone(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      seeds: { type: 'string' },
      explain: { type: 'boolean', default: false },
    },
  });
  const quick = values.quick ?? false;
  const { log } = aloneContext('abuse', quick);
  if (values.seeds !== undefined) {
    const plan = quick ? QUICK : FULL;
    const outcomes: Outcome[] = [];
    for (const seed of values.seeds.split(',').map(Number)) {
      log(`abuse: replaying seed ${seed} (${plan.minutes} min, ${plan.normalKeys} normal keys)`);
      outcomes.push(await replay(seed, plan, values.explain ? (line) => console.log(line) : undefined));
    }
    const s = summarise(outcomes);
    console.log(
      `seeds ${values.seeds}: precision ${s.precision.toFixed(3)}, recall ${s.recall.toFixed(3)}, false ${s.falsePer1000.toFixed(2)} ` +
        `(${s.falseActions}), ${KINDS.map((kind) => `${kind} ${s.byKind[kind].detected}/${s.byKind[kind].instances}`).join(', ')}, ` +
        `detection median ${s.detectionSeconds.length ? fmtNumber(median(s.detectionSeconds)) : '-'} s`,
    );
  } else {
    console.log(sectionText(await runAbuseBenchmark(aloneContext('abuse', quick))));
  }
}
