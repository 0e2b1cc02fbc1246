// The config's guard sections (abuse checks, load shedding), prompt guardrails and alert webhooks.
import { z } from 'zod';
import type { AnomalyAction } from '@tollgate/guard/options';
import {
  choice,
  duration,
  environmentName,
  fields,
  fraction,
  nonEmptyString,
  positiveInteger,
  recordOf,
  url,
} from './rules.js';

const sheddingSchema = fields({
  priorities: recordOf(z.number('must be a number (higher keeps service longer)'))
    .optional()
    .describe('Priority per tier: the lowest are shed first, the highest never. Default: every tier alike.'),
  maxConcurrency: positiveInteger
    .optional()
    .describe('Requests in flight in one process at which it counts as saturated. Default: no limit.'),
  maxEventLoopDelay: duration
    .optional()
    .describe('Event-loop delay (p99) at which it counts as saturated: ms or "100ms". Default: "100ms".'),
  maxUpstreamErrorRate: fraction('must be a fraction greater than 0 and at most 1')
    .optional()
    .describe('Share (0-1] of answers that were upstream failures at which it counts as saturated. Default: off.'),
}).describe("When the process is saturated, lower tiers get 503 first (the guard's loadShedder).");

// The guard's sections are typed here for editors; their ranges are the guard package's own rules
// (resolveGuardOptions, run after the schema), so the config and the package never disagree.
const ANOMALY_ACTIONS = ['alert', 'throttle', 'suspend'] as const satisfies readonly AnomalyAction[];
const NUMBER = 'must be a number';
const spendAnomalySchema = fields({
  bucketSeconds: z.number(NUMBER).optional().describe('Length of one bucket in seconds. Default: 60.'),
  zScore: z
    .number(NUMBER)
    .optional()
    .describe('A bucket this many standard deviations above both baselines is an anomaly. Default: 4.'),
  minBuckets: z
    .number(NUMBER)
    .optional()
    .describe('Buckets of history a key or tenant needs before any of its buckets can be an anomaly. Default: 10.'),
  minSpendUsd: z
    .number(NUMBER)
    .optional()
    .describe('A bucket must spend at least this (USD) to be an anomaly. Default: 0.05.'),
  action: choice(ANOMALY_ACTIONS, `must be one of ${ANOMALY_ACTIONS.join(', ')}`)
    .optional()
    .describe(
      'What an anomaly does: `alert` tells a person; `throttle` also scales the limits down; `suspend` also refuses the key. Default: "alert".',
    ),
  cooldown: duration
    .optional()
    .describe('How long a throttle lasts, and how long a subject stays quiet after an anomaly. Default: "15m".'),
  throttleScale: z
    .number(NUMBER)
    .optional()
    .describe("`throttle`: the factor applied to the subject's limits (0 < x < 1). Default: 0.1."),
  watch: z
    .array(choice(['key', 'tenant'], 'must be "key" or "tenant"'), 'must be a non-empty list of "key" and "tenant"')
    .optional()
    .describe('Watch API keys, tenants, or both. Default: ["key", "tenant"].'),
  fastWindow: duration.optional().describe('How far back the fast baseline looks. Default: "30m".'),
  slowWindow: duration.optional().describe('How far back the slow baseline looks. Default: "1d".'),
}).describe('Spend, tokens, requests and addresses per bucket against moving baselines.');

const repeatedRequestsSchema = fields({
  max: z
    .number(NUMBER)
    .optional()
    .describe('Sends of one request a key may make per window; the next is refused with 429. Default: 20.'),
  windowSeconds: z.number(NUMBER).optional().describe('Default: 60.'),
}).describe('The same request repeated by one key (a runaway loop).');

const authFailuresSchema = fields({
  max: z
    .number(NUMBER)
    .optional()
    .describe('Failed authentications an address may cause per window before it is blocked. Default: 20.'),
  windowSeconds: z.number(NUMBER).optional().describe('Default: 60.'),
  block: duration.optional().describe('How long an address stays blocked. Default: "5m".'),
  distinctKeys: z
    .number(NUMBER)
    .optional()
    .describe(
      'Distinct credentials failing from one address per window that make it credential stuffing. Default: 10.',
    ),
}).describe('Failed authentications per client address.');

// The names the guard README's abuse section documents; ranges checked by the guard's resolveAbuseOptions.
const abuseSchema = fields({
  subjects: z
    .array(choice(['key', 'address', 'tenant'], 'must be "key", "address" or "tenant"'), 'must be a list')
    .optional()
    .describe('What is scored: API keys, client addresses (after trustProxy), tenants. Default: ["key", "address"].'),
  window: duration.optional().describe('The sliding window each subject\'s features cover. Default: "5m".'),
  train: fields({
    every: duration.optional().describe('How often the model is trained anew. Default: "10m".'),
    history: duration.optional().describe('How far back the windows it is trained on go. Default: "24h".'),
    minSubjects: z
      .number(NUMBER)
      .optional()
      .describe('Distinct subjects seen before the model scores or acts on anyone. Default: 50.'),
  })
    .optional()
    .describe("The isolation forest, trained on the deployment's own recent windows."),
  thresholds: fields({
    throttle: z.number(NUMBER).optional().describe('Score (0-1) from which a subject is throttled. Default: 0.65.'),
    block: z.number(NUMBER).optional().describe('Score (0-1) from which a subject is blocked. Default: 0.75.'),
  }).optional(),
  throttle: fields({
    factor: z.number(NUMBER).optional().describe("The factor on a throttled subject's limits and rate. Default: 0.1."),
    for: duration.optional().describe('How long a throttle lasts (429 abuse_throttled). Default: "15m".'),
  }).optional(),
  block: fields({
    for: duration.optional().describe('How long a block lasts (403 abuse_blocked). Default: "15m".'),
  }).optional(),
  shadow: z
    .boolean('must be true or false')
    .optional()
    .describe('Record and alert only; serve everything. Default: false.'),
}).describe("Behavioural abuse detection: an isolation forest of the deployment's own traffic scores each subject.");

export const guardSchema = fields({
  spendAnomaly: spendAnomalySchema.optional(),
  repeatedRequests: repeatedRequestsSchema.optional(),
  authFailures: authFailuresSchema.optional(),
  abuse: abuseSchema.optional(),
  shedding: sheddingSchema.optional(),
  bodyTimeout: duration
    .optional()
    .describe(
      'A provider route\'s body must arrive within this once the caller is identified: ms or "10s". Default: "10s".',
    ),
}).describe(
  'The guard (@tollgate/guard): each section listed turns its check on (`{}` takes its defaults). Default: off.',
);

// Checked by the guard package's own rules too (resolvePromptGuardrails: the deny patterns compile).
export const guardrailsSchema = fields({
  maxPromptChars: positiveInteger
    .optional()
    .describe(
      "The most characters a request's prompt texts may hold together; longer is 400 prompt_rejected. Default: no limit.",
    ),
  deny: z
    .array(nonEmptyString(), 'must be an array of patterns')
    .optional()
    .describe(
      'Regular expressions (JavaScript syntax; a leading `(?i)` makes one case-insensitive) no prompt text may match; a match is 400 prompt_rejected naming `deny[<index>]`.',
    ),
  pii: choice(['off', 'mask', 'block'], 'must be "off", "mask" or "block"')
    .optional()
    .describe(
      'E-mail addresses, phone numbers and Luhn-valid card numbers in prompts: `mask` replaces them with [EMAIL], [PHONE], [CARD] before the upstream sees them; `block` refuses the prompt. Default: "off".',
    ),
}).describe(
  'Prompt checks before the provider call, on every provider route (@tollgate/guard promptGuardrails). Default: off.',
);

export const webhookSchema = fields({
  url: url(['http:', 'https:']).describe('Where each alert is POSTed.'),
  secretEnv: environmentName
    .optional()
    .describe('The environment variable holding the HMAC secret of `x-tollgate-signature`. Default: unsigned.'),
  format: choice(['json', 'slack'], 'must be "json" or "slack"')
    .optional()
    .describe('`json` (the event itself) or `slack` (an incoming-webhook message). Default: "json".'),
});
