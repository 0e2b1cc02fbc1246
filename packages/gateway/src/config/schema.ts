// The whole config file's schema (the contract in examples/proxy/README.md), from its sections, and its types.
import { z } from 'zod';
import { parseDuration } from '@tollgate/core';
import { timeZoneProblem } from '@tollgate/core/options';
import { MIN_RETENTION_MS } from '@tollgate/metering';
import type { RoutingConfig } from '@tollgate/router/upstreams';
import {
  choice,
  duration,
  durationOrOff,
  environmentName,
  isDuration,
  fields,
  nonEmptyString,
  OBJECT,
  positiveInteger,
  recordOf,
  sha256Hex,
  trueOrFalse,
  url,
} from './rules.js';
import { budgetsSchema, featureSchema, globalSchema, tenantSchema } from './budget-schema.js';
import { attributionSchema, jwtSchema, keySchema, sessionsSchema } from './identity-schema.js';
import { guardrailsSchema, guardSchema, webhookSchema } from './guard-schema.js';
import { operatorsSchema } from './operators-schema.js';
import { logSchema, redisSchema, storeOutageSchema } from './store-schema.js';
import { cacheSchema, tierSchema } from './tier-schema.js';
import { defaultUpstreamKind, mcpServerSchema, modelSchema, pricesSchema, upstreamSchema } from './upstream-schema.js';

const TRUST_PROXY =
  'must be true, false, a number of hops, or addresses/subnets/names like "loopback" (a string or an array of strings)';
const EMBEDDED_LEDGER = 'must be true (in memory), false, or a directory path';
const SPOOL = 'must be a directory path, or false to turn the spool off';
const COUNT_CACHE = 'must be a whole number of characters, 0 or more';
const BODY_LIMIT = 'must be a positive number of bytes or a size like "1mb"';
const PORT = 'must be an integer from 0 to 65535';
/** A size in bytes: a positive integer, or a string like "1mb" (as express.json reads it). */
const sizeLimit = () =>
  z.union(
    [
      z.int(BODY_LIMIT).positive(BODY_LIMIT),
      z.string(BODY_LIMIT).regex(/^\s*\d+(\.\d+)?\s*([kKmMgG]?[bB])?\s*$/, BODY_LIMIT),
    ],
    BODY_LIMIT,
  );
const SQL_IDENTIFIER = 'must be a plain SQL identifier (letters, digits, _)';
const sqlIdentifier = nonEmptyString().regex(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/, SQL_IDENTIFIER);

/** The whole config file. Rules across fields (names that point elsewhere, two ways to say one thing) run after it. */
export const configSchema = fields({
  $schema: z
    .string()
    .optional()
    .describe('The JSON Schema editors check the file with (`./tollgate.config.schema.json`); the proxy ignores it.'),
  port: z
    .int(PORT)
    .min(0, PORT)
    .max(65535, PORT)
    .optional()
    .describe('Listen port (`PORT` in the environment wins). Default: 8787.'),
  redisUrl: url(['redis:', 'rediss:'])
    .optional()
    .describe('Redis for every store (`REDIS_URL` in the environment wins). Default: in-memory stores.'),
  redis: redisSchema.optional(),
  timezone: z
    .string({ error: (issue) => timeZoneProblem(issue.input) })
    .superRefine((name, context) => {
      const problem = timeZoneProblem(name);
      if (problem !== undefined) context.addIssue({ code: 'custom', message: problem });
    })
    .optional()
    .describe(
      'The IANA time zone whose local calendar cuts budget periods (a "day" budget resets at local midnight). Default: "UTC".',
    ),
  redisPrefix: nonEmptyString()
    .optional()
    .describe(
      'Prefix of every Redis key the proxy writes (several deployments may share one Redis). Default: "tollgate:".',
    ),
  storeOutage: storeOutageSchema.optional(),
  usageLog: nonEmptyString().optional().describe('Path of the JSONL usage log.'),
  dataDir: nonEmptyString()
    .optional()
    .describe(
      'A directory that keeps what the gateway knows across restarts, held by one process at a time: the embedded usage ' +
        'ledger (`ledger/`, PGlite, unless `postgresUrl` names one), the keys made through /admin/keys, the dashboard ' +
        'or `tollgate keys --config <dataDir>/keys.json` (`keys.json`, on memory stores; Redis keeps its own), and ' +
        'the usage spool (`spool/`). Read by `tollgate report --data-dir`.',
    ),
  postgresUrl: url(['postgres:', 'postgresql:'])
    .optional()
    .describe('PostgreSQL URL of the usage ledger (also read by `pnpm tollgate report`).'),
  postgresSchema: sqlIdentifier
    .optional()
    .describe("Schema of the usage ledger table. Default: the connection's search_path."),
  postgresTable: sqlIdentifier.optional().describe('Name of the usage ledger table. Default: "tollgate_usage".'),
  usageRetention: duration
    // A value that is no duration is named by `duration` already.
    .refine((value) => !isDuration(value) || parseDuration(value) >= MIN_RETENTION_MS, {
      error: (issue) =>
        `must be at least "93d" (a budget's spend is rebuilt from the raw rows of its current period, a quarter at most); got ${JSON.stringify(issue.input)}`,
    })
    .optional()
    .describe(
      'How long the usage ledger keeps raw rows (PostgreSQL or the embedded ledger): whole months older than this are dropped, hourly; the rollups keep their sums, so reports and pages still answer by tenant, key, user, feature and model. At least "93d". Default: every row kept. A ledger made before partitions keeps every row until `tollgate ledger partition`.',
    ),
  embeddedLedger: z
    .union([z.boolean(EMBEDDED_LEDGER), nonEmptyString(EMBEDDED_LEDGER)], EMBEDDED_LEDGER)
    .optional()
    .describe(
      'An embedded PostgreSQL (PGlite, the same SQL) as the usage ledger when there is no `postgresUrl`: `true` keeps it in memory, ' +
        'a path keeps it in that directory (one process at a time). Default: false (true in the zero-config demo).',
    ),
  spool: z
    .union([z.literal(false, SPOOL), nonEmptyString(SPOOL)], SPOOL)
    .optional()
    .describe(
      'Directory of the usage spool (calls sent and records not yet stored, kept through a crash); `false` turns it off. ' +
        'Default: with `usageLog`, `<usageLog>.spool`; with only `postgresUrl`, `.tollgate/spool`; else none.',
    ),
  adminKeySha256: sha256Hex
    .optional()
    .describe(
      'SHA-256 hex of the admin key that opens `/admin/*`. Without it (and without `operators.oidc`) the admin ' +
        'routes answer 404.',
    ),
  operators: operatorsSchema.optional(),
  metrics: fields({ public: trueOrFalse.describe('true serves `/metrics` to anyone.') })
    .optional()
    .describe(
      '`/metrics` names tenants and their spend: it needs the admin key, or `{ "public": true }` to serve it to anyone. Default: behind the admin key.',
    ),
  bodyLimit: sizeLimit()
    .optional()
    .describe('Largest accepted JSON body: bytes, or a string like "1mb". Default: "1mb".'),
  uploadLimit: sizeLimit()
    .optional()
    .describe(
      'Largest accepted multipart upload (/v1/audio/transcriptions), read whole before the call: bytes, or a string like "25mb". Default: "25mb".',
    ),
  countCacheChars: z
    .int(COUNT_CACHE)
    .min(0, COUNT_CACHE)
    .optional()
    .describe(
      'Characters of prompt text whose exact token counts the meter keeps, per tenant, so that a text sent again is not counted again; ' +
        '0 keeps none. Default: 4000000 (about 8 MB).',
    ),
  defaultTier: nonEmptyString()
    .optional()
    .describe('Tier of identities that name none (keys without tier or tenant tier). Default: "free" when defined.'),
  requiredScope: nonEmptyString()
    .optional()
    .describe(
      'Scope every proxied route requires; omit to require none. Some key in `keys` must hold it unless `jwt` is set.',
    ),
  upstreams: recordOf(upstreamSchema)
    .transform((upstreams) => {
      for (const [name, upstream] of Object.entries(upstreams))
        if (upstream.kind !== 'mock') upstream.api ??= defaultUpstreamKind(name);
      return upstreams;
    })
    .optional()
    .describe(
      'The providers calls are sent to, by name. Required: `{ "mock": { "kind": "mock" } }` serves the built-in mock ' +
        'provider (fake answers) on purpose.',
    ),
  models: recordOf(modelSchema)
    .optional()
    .describe('Prices and limits per model id: adds or overrides a catalogue row.'),
  prices: pricesSchema
    .optional()
    .describe(
      'A maintained price source read at start and every `refresh`, between the shipped table and `models` ' +
        '(which win).',
    ),
  tiers: recordOf(tierSchema).optional().describe('Limits and model allowlists per tier name.'),
  tenants: recordOf(tenantSchema).optional().describe('Tier, budget and downgrades per tenant id.'),
  features: recordOf(featureSchema)
    .optional()
    .describe(
      'Budgets per feature (the key\'s `feature`), across tenants; `"*"` for every feature without its own entry.',
    ),
  mcpServers: recordOf(mcpServerSchema)
    .optional()
    .describe(
      'MCP servers served at `/mcp/<name>` behind the same keys: tools allowed by `tools` on tiers, tenants and keys, limited by `toolCallsPerMinute` and priced per call against budgets.',
    ),
  keys: z.array(keySchema, 'must be an array').optional().describe('API keys, stored as SHA-256 hex of the whole key.'),
  jwt: jwtSchema.optional(),
  global: globalSchema.optional(),
  log: logSchema.optional(),
  guard: guardSchema.optional(),
  guardrails: guardrailsSchema.optional(),
  attribution: attributionSchema.optional(),
  sessions: sessionsSchema.optional(),
  trustProxy: z
    .union(
      [
        z.boolean(TRUST_PROXY),
        z.int(TRUST_PROXY).min(0, TRUST_PROXY),
        nonEmptyString(TRUST_PROXY),
        z.array(nonEmptyString(), TRUST_PROXY).min(1, TRUST_PROXY),
      ],
      TRUST_PROXY,
    )
    .optional()
    .describe(
      "Express's `trust proxy`: which proxies in front may name the client address (`X-Forwarded-For`). Default: false.",
    ),
  alerts: fields({
    webhooks: z.array(webhookSchema, 'must be an array').optional().describe('Every alert is POSTed to each.'),
  })
    .optional()
    .describe(
      'Where events (budget spent, soft limit, anomaly, suspension, auth flood, store down) go besides the operator log.',
    ),
  cache: cacheSchema.optional(),
  export: fields({
    stripe: fields({
      apiKeyEnv: environmentName.describe('Name of the environment variable holding the Stripe secret key.'),
      eventName: nonEmptyString()
        .max(100, 'must be at most 100 characters')
        .describe("The meter's event name (`event_name`) in Stripe."),
      customers: recordOf(nonEmptyString().regex(/^cus_\w+$/, 'must be a Stripe customer id (cus_...)')).describe(
        'Tenant id → Stripe customer id: the records of these tenants are billed.',
      ),
      baseUrl: url(['http:', 'https:']).optional().describe('The Stripe API address. Default: https://api.stripe.com.'),
    }).describe(
      'Stripe billing meter events from priced usage records of mapped tenants (`identifier` = the record id, value in ' +
        'whole USD micro-units with the remainder carried per customer and UTC month: a month adds up to floor(its ' +
        'nano-USD / 1000)), retried until accepted, each once; needs the usage spool (`dataDir`, `usageLog`, ' +
        '`postgresUrl` or `spool`).',
    ),
  })
    .optional()
    .describe('Where usage records are sent besides the usage log and the ledger.'),
  // The routing sections are judged by the router's own option rules (routing-config.ts): here they are objects.
  modelGroups: recordOf(z.looseObject({}, OBJECT))
    .optional()
    .describe(
      'Model names a client may ask for, each served by one or more targets: `{ "strategy": "fallback", "targets": [{ "upstream", "model" }] }`.',
    ),
  requestClasses: recordOf(z.looseObject({}, OBJECT))
    .optional()
    .describe(
      'Model aliases (e.g. `auto`) whose rules pick a group by what the request is: `{ "rules": [{ "tools": true, "group": "smart" }], "default": "quick" }`.',
    ),
  retry: z
    .looseObject({}, OBJECT)
    .optional()
    .describe('`attempts`, `baseDelayMs`, `maxDelayMs`: retries across the targets of a group.'),
  circuitBreaker: z
    .looseObject({}, OBJECT)
    .optional()
    .describe('`failureThreshold`, `windowMs`, `failureRate`, `minimumCalls`, `cooldownMs`: per target.'),
  healthChecks: fields({
    interval: duration.optional().describe('Between two rounds of probes. Default: "30s".'),
    timeout: duration.optional().describe('How long a probe may take. Default: "5s".'),
    failAfter: positiveInteger
      .optional()
      .describe('Failed rounds in a row that take a target out of routing. Default: 2.'),
    passAfter: positiveInteger.optional().describe('Passed rounds in a row that put it back. Default: 2.'),
    statusPages: z
      .union([trueOrFalse, recordOf(z.union([url(['http:', 'https:']), z.literal(false)]))])
      .optional()
      .describe(
        "Also read the providers' public status pages (Statuspage JSON; a major or critical outage fails the round): " +
          "true for OpenAI's and Anthropic's own, or upstream name → URL (false: none). Default: false.",
      ),
    probe: choice(['models', 'one-token'], 'must be "models" or "one-token"')
      .optional()
      .describe(
        "What is sent: `models` lists each upstream's models (free); `one-token` asks each target's model for one " +
          'output token (billed for every target, round and process). Default: "models".',
      ),
  })
    .optional()
    .describe(
      'Active health checks of every upstream and routing target: `failAfter` failed rounds take a target out of ' +
        'routing, `passAfter` passed ones put it back; reported on /healthz (details behind the admin key), in the ' +
        'metrics and on the dashboard.',
    ),
  budgetDrift: fields({
    alertUsd: z
      .number('must be a number of USD, 0 or more')
      .min(0, 'must be a number of USD, 0 or more')
      .optional()
      .describe(
        'A budget scope whose counter is this far from the usage ledger (either way) fires `budget.drift`. Default: 1.',
      ),
    interval: durationOrOff
      .optional()
      .describe('Between two readings of the drift sampler ("0s": no sampler). Default: "30s".'),
    scopesPerTick: positiveInteger.optional().describe('Budget scopes compared per reading, in turn. Default: 20.'),
  })
    .optional()
    .describe(
      "With a usage ledger (`postgresUrl` or `dataDir`): each budget scope's counter in the store set against what the " +
        'ledger holds for it (`tollgate_budget_drift_nano_usd`, `GET /admin/budgets/.../drift`), repaired with ' +
        '`POST /admin/budgets/.../repair`.',
    ),
  shutdown: fields({
    drainDelay: duration
      .optional()
      .describe(
        'After SIGTERM or SIGINT, how long new requests and connections are still served while /readyz answers 503 ' +
          '(a load balancer takes the replica out meanwhile). Default: "5s".',
      ),
    timeout: duration
      .optional()
      .describe(
        "Then, how long the requests and streams in flight get to finish; past it a stream is ended in its API's " +
          'own way and billed what went out, a call still waiting gets its error. Default: "30s".',
      ),
  })
    .optional()
    .describe(
      'How `tollgate-gateway` stops: served for `drainDelay`, then no new connections, what is in flight finished ' +
        'within `timeout`, every record flushed, exit 0.',
    ),
  healthProbe: fields({
    intervalMs: positiveInteger.optional().describe('Milliseconds between probes. Default: 30000.'),
    timeoutMs: positiveInteger.optional().describe('Milliseconds a probe may take. Default: 5000.'),
  })
    .optional()
    .describe(
      'Deprecated: the older name of `healthChecks`, read as `{ interval, timeout, failAfter: 1, passAfter: 1 }` ' +
        '(the last probe decides, as it did).',
    ),
})
  .transform(({ $schema: _editorsOnly, ...config }) => config)
  .meta({
    title: 'tollgate proxy config',
    description: 'The config file of the tollgate example proxy (TOLLGATE_CONFIG).',
  });

export type BudgetsConfig = z.output<typeof budgetsSchema>;
export type TierConfig = z.output<typeof tierSchema>;
export type TenantConfig = z.output<typeof tenantSchema>;
export type KeyConfig = z.output<typeof keySchema>;
export type JwtConfig = z.output<typeof jwtSchema>;
export type GuardConfig = z.output<typeof guardSchema>;
/** The routing sections keep the router's own types: the schema only knows they are objects. */
export type GatewayConfig = Omit<z.output<typeof configSchema>, keyof RoutingConfig> & RoutingConfig;
