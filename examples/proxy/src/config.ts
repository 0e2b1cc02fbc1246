// The proxy's JSON config (the contract in examples/proxy/README.md): its types and a validator that names the faulty field.
import express from 'express';
import { closestName, isCalendarPeriod, parseDuration, TollgateError } from '@tollgate/core';
import type { CalendarPeriod } from '@tollgate/core';
import { checkRouting, ROUTING_FIELDS } from './routing-config.js';
import type { RoutingConfig } from './routing-config.js';
import { resolveGuardOptions } from '@tollgate/guard';
import type { AuthFailuresOptions, RepeatedRequestsOptions, SpendAnomalyOptions } from '@tollgate/guard';
import { parseStoreOutage } from './outage-setup.js';
import type { StoreOutageConfig } from './outage-setup.js';

export interface BudgetConfig {
  /** The most that may be spent per period, in USD. */
  usd: number;
  /** UTC calendar period the budget resets on. @default "month" */
  period: CalendarPeriod;
  /** Fraction of `usd` (0..1] at which the soft-limit event fires and downgrades start. */
  softLimit?: number;
}

/** The wire formats an upstream may speak (`openai-compatible`: Chat Completions as self-hosted servers speak it). */
export const UPSTREAM_KINDS = ['openai', 'anthropic', 'openai-compatible', 'gemini', 'azure-openai'] as const;
export type UpstreamKind = (typeof UPSTREAM_KINDS)[number];

/** The kind of an upstream that names none, from its name. */
export function defaultUpstreamKind(name: string): UpstreamKind {
  if (name === 'anthropic') return 'anthropic';
  return name === 'gemini' || name === 'google' ? 'gemini' : 'openai';
}

export interface UpstreamConfig {
  /** e.g. `https://api.openai.com/v1`, `https://api.anthropic.com` or `https://generativelanguage.googleapis.com/v1beta`. */
  baseUrl: string;
  /** Name of the environment variable holding the upstream key (preferred over `apiKey`). */
  apiKeyEnv?: string;
  /** The upstream key itself (prefer `apiKeyEnv`: config files get copied around). */
  apiKey?: string;
  /** The wire format this upstream speaks. @default "anthropic" for the name "anthropic", "gemini" for "gemini"/"google", else "openai" */
  api?: UpstreamKind;
  /** Sent to Anthropic upstreams when the client sent none. @default "2023-06-01" */
  anthropicVersion?: string;
  /** Azure OpenAI: the `api-version` query parameter of every call. @default "2024-10-21" */
  apiVersion?: string;
  /** Azure OpenAI: the deployment serving each model name (`{ "gpt-4o": "my-gpt4o" }`). @default the model name */
  deployments?: Record<string, string>;
  /** Milliseconds to open the TCP/TLS connection. @default 10000 */
  connectTimeoutMs?: number;
  /** Milliseconds from sending the request to the response headers (first byte). @default 120000 */
  firstByteTimeoutMs?: number;
  /** Milliseconds the response body may stay silent between chunks. @default 120000 */
  idleTimeoutMs?: number;
}

export interface ModelConfig {
  /** Which upstream serves the model (a key of `upstreams`; with the mock: openai, anthropic or google). */
  provider: string;
  inputPerMTok: number;
  cachedInputPerMTok?: number;
  cacheWritePerMTok?: number;
  /** Cache write with a 1-hour lifetime. @default cacheWritePerMTok */
  cacheWrite1hPerMTok?: number;
  outputPerMTok: number;
  /** The model's maximum output: the cap when a request sets none. @default 16,384 */
  maxOutputTokens?: number;
  contextWindow?: number;
  /** How input is counted: `o200k_base`, `cl100k_base` (exact) or `approximate`. @default "approximate" */
  tokenizer?: 'o200k_base' | 'cl100k_base' | 'approximate';
}

export interface TierConfig {
  requestsPerMinute?: number;
  tokensPerMinute?: number;
  /** Model allowlist: exact ids, `prefix*`, or `*`. @default ["*"] */
  models?: string[];
  /** Output cap applied to every request of the tier (clamped, or set when absent). */
  maxOutputTokens?: number;
  /** Requests in flight at once per key. */
  maxConcurrent?: number;
  /**
   * `false` keeps the tier's requests out of the response cache; `{ "ttl": "1h" }` keeps its answers
   * that long instead of `cache.ttl`. @default true (when `cache` is configured)
   */
  cache?: boolean | { ttl?: number | string };
}

/** The response cache (@tollgate/cache) and automatic provider prompt caching. */
export interface CacheConfig {
  /** Where answers are kept. @default "redis" with Redis stores, else "memory" */
  store?: 'memory' | 'redis';
  /** How long an answer is served. @default "10m" */
  ttl?: number | string;
  /** Who shares answers: each tenant, each key, or every caller. @default "tenant" */
  scope?: 'tenant' | 'key' | 'global';
  /** Answers larger than this many bytes are not stored. @default 1000000 */
  maxEntryBytes?: number;
  /** The memory store's bound in bytes. @default 67108864 (64 MiB) */
  maxBytes?: number;
  /** Share of an answer's cost billed on a hit, 0 to 1. @default 0 */
  costFraction?: number;
  /** Anthropic cache_control breakpoints on long tools and system prompts: true, or `{ "ttl": "5m" | "1h", "minTokens": n }`. @default false */
  promptCaching?: boolean | { ttl?: '5m' | '1h'; minTokens?: number };
}

export interface TenantConfig {
  tier?: string;
  budget?: BudgetConfig;
  /** Model substitutions applied once the tenant passed a budget's soft limit. */
  downgrade?: Record<string, string>;
}

export interface KeyConfig {
  id: string;
  /** SHA-256 hex of the whole key string. */
  sha256: string;
  tenant?: string;
  user?: string;
  feature?: string;
  tier?: string;
  scopes?: string[];
  models?: string[];
  budget?: BudgetConfig;
  /** ISO 8601 (written by `pnpm tollgate keys create`). */
  createdAt?: string;
  /** ISO 8601; the key stops working then. */
  expiresAt?: string;
  disabled?: boolean;
}

export interface JwtConfig {
  issuer?: string;
  audience?: string;
  /** A static JWKS (`{ "keys": [...] }`). */
  jwks?: { keys: Record<string, unknown>[] };
  /** A remote JWKS URL (fetched and cached). */
  jwksUrl?: string;
  tenantClaim?: string;
  tierClaim?: string;
  scopeClaim?: string;
  userClaim?: string;
  algorithms?: string[];
}

export interface RedisConfig {
  /** URLs of some nodes of a Redis Cluster (`redis://host:port`); the stores spread over its shards. */
  cluster?: string[];
}

export interface GlobalConfig {
  requestsPerMinute?: number;
  tokensPerMinute?: number;
  budget?: BudgetConfig;
}

/** The levels of the proxy's log, most severe first; `silent` writes nothing. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface LogConfig {
  /** Lines below this level are not written (access lines are `info`, failures `error`, health checks `debug`). @default "info" */
  level?: LogLevel;
  /** `stdout`, `stderr`, or the path of a file the lines are appended to. @default "stderr" */
  destination?: string;
}

/** When the process is saturated, lower tiers get 503 first (the guard's loadShedder). */
export interface SheddingConfig {
  /** Priority per tier: the lowest are shed first, the highest never. @default every tier alike */
  priorities?: Record<string, number>;
  /** Requests in flight in one process at which it counts as saturated. @default no limit */
  maxConcurrency?: number;
  /** Event-loop delay (p99) at which it counts as saturated: ms or "100ms". @default "100ms" */
  maxEventLoopDelay?: number | string;
  /** Share (0-1] of answers that were upstream failures at which it counts as saturated. @default off */
  maxUpstreamErrorRate?: number;
}

/** The guard (@tollgate/guard): each section listed turns its check on (`{}` takes its defaults). */
export interface GuardConfig {
  spendAnomaly?: SpendAnomalyOptions;
  repeatedRequests?: Omit<RepeatedRequestsOptions, 'onStoreFailure'>;
  authFailures?: AuthFailuresOptions;
  shedding?: SheddingConfig;
  /** A provider route's body must arrive within this once the caller is identified: ms or "10s". @default "10s" */
  bodyTimeout?: number | string;
}

export interface WebhookConfig {
  url: string;
  /** The environment variable holding the HMAC secret of `x-tollgate-signature`. @default unsigned */
  secretEnv?: string;
  /** `json` (the event itself) or `slack` (an incoming-webhook message). @default "json" */
  format?: 'json' | 'slack';
}

export interface ProxyConfig extends RoutingConfig {
  port?: number;
  redisUrl?: string;
  /** A Redis Cluster instead of one server (`redisUrl`): `{ "cluster": ["redis://host:port", ...] }`. */
  redis?: RedisConfig;
  /** Prefix of every Redis key the proxy writes (several deployments may share one Redis). @default "tollgate:" */
  redisPrefix?: string;
  /** What request limits, token limits and budgets do while Redis is out (outage-setup.ts). @default failClosed */
  storeOutage?: StoreOutageConfig;
  /** Path of the JSONL usage log. */
  usageLog?: string;
  /** PostgreSQL URL of the usage ledger (also read by `pnpm tollgate report`). */
  postgresUrl?: string;
  /** Schema of the usage ledger table. @default the connection's search_path */
  postgresSchema?: string;
  /** Name of the usage ledger table. @default "tollgate_usage" */
  postgresTable?: string;
  /**
   * An embedded PostgreSQL (PGlite, the same SQL) as the usage ledger when there is no
   * `postgresUrl`: `true` keeps it in memory (the demo), a path keeps it in that directory (one
   * process at a time). The dashboard and the rebuild of budget spend read it.
   * @default false (true in the zero-config demo)
   */
  embeddedLedger?: boolean | string;
  /**
   * Directory of the usage spool: calls sent and records not yet stored, kept on local disk so
   * that a crash loses none (written at the next start); `false` turns it off. Processes may share one.
   * @default with `usageLog`: `<usageLog>.spool`; with only `postgresUrl`: `.tollgate/spool`; else none
   */
  spool?: string | false;
  /** SHA-256 hex of the admin key that opens `/admin/*`. Without it the admin routes answer 404. */
  adminKeySha256?: string;
  /**
   * `/metrics` names tenants and their spend: it needs the admin key, or `{ "public": true }` to serve
   * it to anyone (a scraper on a private network). @default behind the admin key; 404 without one
   */
  metrics?: { public: boolean };
  /** Largest accepted JSON body: bytes, or a string like "1mb". @default "1mb" */
  bodyLimit?: number | string;
  /** Tier of identities that name none (keys without tier or tenant tier). @default "free" when defined */
  defaultTier?: string;
  /** Scope every proxied route requires; omit to require none. */
  requiredScope?: string;
  upstreams?: Record<string, UpstreamConfig>;
  models?: Record<string, ModelConfig>;
  tiers?: Record<string, TierConfig>;
  tenants?: Record<string, TenantConfig>;
  keys?: KeyConfig[];
  jwt?: JwtConfig;
  global?: GlobalConfig;
  /** The access and error log (JSON lines, pino). @default { "level": "info", "destination": "stderr" } */
  log?: LogConfig;
  /** Spend anomalies, repeated requests, failed authentications per address, shedding. @default off */
  guard?: GuardConfig;
  /** Express's `trust proxy`: which proxies in front may name the client address (`X-Forwarded-For`). @default false */
  trustProxy?: boolean | number | string | string[];
  /** Where events (budget spent, soft limit, anomaly, suspension, auth flood, store down) go besides the operator log. */
  alerts?: { webhooks?: WebhookConfig[] };
  /** The response cache and provider prompt caching; per tier `"cache": false` opts out. @default off */
  cache?: CacheConfig;
}

export class ConfigError extends TollgateError {
  constructor(message: string) {
    super('ERR_TG_PROXY_INVALID_CONFIG', `Invalid proxy config: ${message}`);
  }
}

type Json = Record<string, unknown>;

function fail(message: string): never {
  throw new ConfigError(message);
}

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function objectAt(value: unknown, path: string): Json {
  if (!isObject(value)) fail(`${path} must be an object`);
  return value;
}

function knownFields(value: Json, path: string, known: readonly string[]): void {
  for (const name of Object.keys(value)) {
    if (known.includes(name)) continue;
    const hint = closestName(name, known);
    fail(`${path ? `${path} has` : 'the config has'} no field "${name}"${hint ? `; did you mean "${hint}"?` : ''} (known: ${known.join(', ')})`);
  }
}

function positiveInteger(value: unknown, path: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) fail(`${path} must be a positive integer`);
  return value;
}

function nonNegativeNumber(value: unknown, path: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) fail(`${path} must be a number >= 0`);
  return value;
}

function nonEmptyString(value: unknown, path: string): string {
  if (typeof value !== 'string' || value.trim().length === 0) fail(`${path} must be a non-empty string`);
  return value;
}

function stringList(value: unknown, path: string): string[] {
  if (!Array.isArray(value)) fail(`${path} must be an array of strings`);
  return value.map((item, i) => nonEmptyString(item, `${path}[${i}]`));
}

function httpUrl(value: unknown, path: string, protocols: readonly string[]): string {
  const text = nonEmptyString(value, path);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    fail(`${path} must be a URL (${protocols.join(' or ')}); got ${JSON.stringify(text)}`);
  }
  if (!protocols.includes(url.protocol)) fail(`${path} must use ${protocols.join(' or ')}; got ${JSON.stringify(url.protocol)}`);
  return text;
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

function sha256Hex(value: unknown, path: string): string {
  if (typeof value !== 'string' || !SHA256_HEX.test(value)) fail(`${path} must be a SHA-256 hex digest (64 lowercase hex characters)`);
  return value;
}

/** Entries of a JSON object as a null-prototype record, so names like "constructor" are plain keys. */
function recordOf<T>(value: unknown, path: string, parseEntry: (entry: unknown, entryPath: string, name: string) => T): Record<string, T> {
  const object = objectAt(value, path);
  const record = Object.create(null) as Record<string, T>;
  for (const [name, entry] of Object.entries(object)) {
    if (name.length === 0) fail(`${path} has an empty name`);
    record[name] = parseEntry(entry, `${path}.${name}`, name);
  }
  return record;
}

function parseBudget(value: unknown, path: string): BudgetConfig {
  const budget = objectAt(value, path);
  knownFields(budget, path, ['usd', 'period', 'softLimit']);
  const usd = budget.usd;
  if (typeof usd !== 'number' || !Number.isFinite(usd) || usd <= 0 || usd > 1e9) fail(`${path}.usd must be a positive number of USD (at most 1e9)`);
  const period = budget.period ?? 'month';
  if (!isCalendarPeriod(period)) fail(`${path}.period must be "hour", "day" or "month"`);
  const result: BudgetConfig = { usd, period };
  if (budget.softLimit !== undefined) {
    const soft = budget.softLimit;
    if (typeof soft !== 'number' || !(soft > 0 && soft <= 1)) fail(`${path}.softLimit must be a fraction greater than 0 and at most 1`);
    result.softLimit = soft;
  }
  return result;
}

function parseUpstream(value: unknown, path: string, name: string): UpstreamConfig {
  const upstream = objectAt(value, path);
  knownFields(upstream, path, ['baseUrl', 'apiKeyEnv', 'apiKey', 'api', 'anthropicVersion', 'apiVersion', 'deployments', 'connectTimeoutMs', 'firstByteTimeoutMs', 'idleTimeoutMs']);
  const result: UpstreamConfig = { baseUrl: httpUrl(upstream.baseUrl, `${path}.baseUrl`, ['http:', 'https:']).replace(/\/+$/, '') };
  if (upstream.apiKeyEnv !== undefined) {
    const env = nonEmptyString(upstream.apiKeyEnv, `${path}.apiKeyEnv`);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(env)) fail(`${path}.apiKeyEnv must be an environment variable name`);
    result.apiKeyEnv = env;
  }
  if (upstream.apiKey !== undefined) result.apiKey = nonEmptyString(upstream.apiKey, `${path}.apiKey`);
  const api = upstream.api ?? defaultUpstreamKind(name);
  if (!(UPSTREAM_KINDS as readonly unknown[]).includes(api)) fail(`${path}.api must be one of ${UPSTREAM_KINDS.map((kind) => `"${kind}"`).join(', ')}`);
  result.api = api as UpstreamKind;
  if (upstream.anthropicVersion !== undefined) result.anthropicVersion = nonEmptyString(upstream.anthropicVersion, `${path}.anthropicVersion`);
  if (upstream.apiVersion !== undefined) result.apiVersion = nonEmptyString(upstream.apiVersion, `${path}.apiVersion`);
  if (upstream.deployments !== undefined) result.deployments = recordOf(upstream.deployments, `${path}.deployments`, (entry, entryPath) => nonEmptyString(entry, entryPath));
  for (const field of ['connectTimeoutMs', 'firstByteTimeoutMs', 'idleTimeoutMs'] as const) {
    if (upstream[field] !== undefined) result[field] = positiveInteger(upstream[field], `${path}.${field}`);
  }
  return result;
}

function parseModel(value: unknown, path: string): ModelConfig {
  const model = objectAt(value, path);
  knownFields(model, path, [
    'provider', 'inputPerMTok', 'cachedInputPerMTok', 'cacheWritePerMTok', 'cacheWrite1hPerMTok', 'outputPerMTok', 'maxOutputTokens', 'contextWindow', 'tokenizer',
  ]);
  const result: ModelConfig = {
    provider: nonEmptyString(model.provider, `${path}.provider`),
    inputPerMTok: nonNegativeNumber(model.inputPerMTok, `${path}.inputPerMTok`),
    outputPerMTok: nonNegativeNumber(model.outputPerMTok, `${path}.outputPerMTok`),
  };
  if (model.cachedInputPerMTok !== undefined) result.cachedInputPerMTok = nonNegativeNumber(model.cachedInputPerMTok, `${path}.cachedInputPerMTok`);
  if (model.cacheWritePerMTok !== undefined) result.cacheWritePerMTok = nonNegativeNumber(model.cacheWritePerMTok, `${path}.cacheWritePerMTok`);
  if (model.cacheWrite1hPerMTok !== undefined) result.cacheWrite1hPerMTok = nonNegativeNumber(model.cacheWrite1hPerMTok, `${path}.cacheWrite1hPerMTok`);
  if (model.maxOutputTokens !== undefined) result.maxOutputTokens = positiveInteger(model.maxOutputTokens, `${path}.maxOutputTokens`);
  if (model.contextWindow !== undefined) result.contextWindow = positiveInteger(model.contextWindow, `${path}.contextWindow`);
  if (model.tokenizer !== undefined) {
    if (model.tokenizer !== 'o200k_base' && model.tokenizer !== 'cl100k_base' && model.tokenizer !== 'approximate') {
      fail(`${path}.tokenizer must be "o200k_base", "cl100k_base" or "approximate"`);
    }
    result.tokenizer = model.tokenizer;
  }
  return result;
}

function parseTier(value: unknown, path: string): TierConfig {
  const tier = objectAt(value, path);
  knownFields(tier, path, ['requestsPerMinute', 'tokensPerMinute', 'models', 'maxOutputTokens', 'maxConcurrent', 'cache']);
  const result: TierConfig = {};
  for (const field of ['requestsPerMinute', 'tokensPerMinute', 'maxOutputTokens', 'maxConcurrent'] as const) {
    if (tier[field] !== undefined) result[field] = positiveInteger(tier[field], `${path}.${field}`);
  }
  if (tier.models !== undefined) result.models = stringList(tier.models, `${path}.models`);
  if (tier.cache !== undefined) {
    if (typeof tier.cache === 'boolean') {
      result.cache = tier.cache;
    } else {
      if (!isObject(tier.cache)) fail(`${path}.cache must be true, false or { "ttl": "1h" }`);
      knownFields(tier.cache, `${path}.cache`, ['ttl']);
      result.cache = tier.cache.ttl === undefined ? {} : { ttl: durationAt(tier.cache.ttl, `${path}.cache.ttl`) };
    }
  }
  return result;
}

function parseCache(value: unknown, path: string): CacheConfig {
  const cache = objectAt(value, path);
  knownFields(cache, path, ['store', 'ttl', 'scope', 'maxEntryBytes', 'maxBytes', 'costFraction', 'promptCaching']);
  const result: CacheConfig = {};
  if (cache.store !== undefined) {
    if (cache.store !== 'memory' && cache.store !== 'redis') fail(`${path}.store must be "memory" or "redis"`);
    result.store = cache.store;
  }
  if (cache.ttl !== undefined) result.ttl = durationAt(cache.ttl, `${path}.ttl`);
  if (cache.scope !== undefined) {
    if (cache.scope !== 'tenant' && cache.scope !== 'key' && cache.scope !== 'global') fail(`${path}.scope must be "tenant", "key" or "global"`);
    result.scope = cache.scope;
  }
  if (cache.maxEntryBytes !== undefined) result.maxEntryBytes = positiveInteger(cache.maxEntryBytes, `${path}.maxEntryBytes`);
  if (cache.maxBytes !== undefined) result.maxBytes = positiveInteger(cache.maxBytes, `${path}.maxBytes`);
  if (cache.costFraction !== undefined) {
    if (typeof cache.costFraction !== 'number' || !(cache.costFraction >= 0 && cache.costFraction <= 1)) fail(`${path}.costFraction must be a number from 0 to 1`);
    result.costFraction = cache.costFraction;
  }
  const prompt = cache.promptCaching;
  if (prompt === undefined || typeof prompt === 'boolean') {
    if (prompt !== undefined) result.promptCaching = prompt;
    return result;
  }
  const promptPath = `${path}.promptCaching`;
  const options = objectAt(prompt, promptPath);
  knownFields(options, promptPath, ['ttl', 'minTokens']);
  result.promptCaching = {};
  if (options.ttl !== undefined) {
    if (options.ttl !== '5m' && options.ttl !== '1h') fail(`${promptPath}.ttl must be "5m" or "1h"`);
    result.promptCaching.ttl = options.ttl;
  }
  if (options.minTokens !== undefined) result.promptCaching.minTokens = positiveInteger(options.minTokens, `${promptPath}.minTokens`);
  return result;
}

function parseDowngrade(value: unknown, path: string): Record<string, string> {
  return recordOf(value, path, (entry, entryPath) => nonEmptyString(entry, entryPath));
}

function parseTenant(value: unknown, path: string): TenantConfig {
  const tenant = objectAt(value, path);
  knownFields(tenant, path, ['tier', 'budget', 'downgrade']);
  const result: TenantConfig = {};
  if (tenant.tier !== undefined) result.tier = nonEmptyString(tenant.tier, `${path}.tier`);
  if (tenant.budget !== undefined) result.budget = parseBudget(tenant.budget, `${path}.budget`);
  if (tenant.downgrade !== undefined) result.downgrade = parseDowngrade(tenant.downgrade, `${path}.downgrade`);
  return result;
}

function parseKey(value: unknown, path: string): KeyConfig {
  const key = objectAt(value, path);
  knownFields(key, path, ['id', 'sha256', 'tenant', 'user', 'feature', 'tier', 'scopes', 'models', 'budget', 'createdAt', 'expiresAt', 'disabled']);
  const result: KeyConfig = { id: nonEmptyString(key.id, `${path}.id`), sha256: sha256Hex(key.sha256, `${path}.sha256`) };
  for (const field of ['tenant', 'user', 'feature', 'tier'] as const) {
    if (key[field] !== undefined) result[field] = nonEmptyString(key[field], `${path}.${field}`);
  }
  if (key.scopes !== undefined) result.scopes = stringList(key.scopes, `${path}.scopes`);
  if (key.models !== undefined) result.models = stringList(key.models, `${path}.models`);
  if (key.budget !== undefined) result.budget = parseBudget(key.budget, `${path}.budget`);
  for (const field of ['createdAt', 'expiresAt'] as const) {
    if (key[field] === undefined) continue;
    const time = nonEmptyString(key[field], `${path}.${field}`);
    if (Number.isNaN(Date.parse(time))) fail(`${path}.${field} must be an ISO 8601 date-time`);
    result[field] = time;
  }
  if (key.disabled !== undefined) {
    if (typeof key.disabled !== 'boolean') fail(`${path}.disabled must be true or false`);
    result.disabled = key.disabled;
  }
  return result;
}

function parseJwt(value: unknown, path: string): JwtConfig {
  const jwt = objectAt(value, path);
  knownFields(jwt, path, ['issuer', 'audience', 'jwks', 'jwksUrl', 'tenantClaim', 'tierClaim', 'scopeClaim', 'userClaim', 'algorithms']);
  const result: JwtConfig = {};
  for (const field of ['issuer', 'audience', 'tenantClaim', 'tierClaim', 'scopeClaim', 'userClaim'] as const) {
    if (jwt[field] !== undefined) result[field] = nonEmptyString(jwt[field], `${path}.${field}`);
  }
  if (jwt.jwks !== undefined) {
    const jwks = objectAt(jwt.jwks, `${path}.jwks`);
    if (!Array.isArray(jwks.keys) || !jwks.keys.every(isObject)) fail(`${path}.jwks.keys must be an array of JWK objects`);
    if (jwks.keys.length === 0) fail(`${path}.jwks.keys must hold at least one public key`);
    result.jwks = { keys: jwks.keys };
  }
  if (jwt.jwksUrl !== undefined) result.jwksUrl = httpUrl(jwt.jwksUrl, `${path}.jwksUrl`, ['https:', 'http:']);
  if (jwt.algorithms !== undefined) result.algorithms = stringList(jwt.algorithms, `${path}.algorithms`);
  if (result.jwks === undefined && result.jwksUrl === undefined) fail(`${path} needs "jwks" or "jwksUrl"`);
  return result;
}

function parseRedis(value: unknown, path: string): RedisConfig {
  const redis = objectAt(value, path);
  knownFields(redis, path, ['cluster']);
  const result: RedisConfig = {};
  if (redis.cluster !== undefined) {
    if (!Array.isArray(redis.cluster) || redis.cluster.length === 0) fail(`${path}.cluster must be a non-empty array of node URLs ("redis://host:port")`);
    result.cluster = redis.cluster.map((url, i) => httpUrl(url, `${path}.cluster[${i}]`, ['redis:', 'rediss:']));
  }
  return result;
}

function parseGlobal(value: unknown, path: string): GlobalConfig {
  const global = objectAt(value, path);
  knownFields(global, path, ['requestsPerMinute', 'tokensPerMinute', 'budget']);
  const result: GlobalConfig = {};
  if (global.requestsPerMinute !== undefined) result.requestsPerMinute = positiveInteger(global.requestsPerMinute, `${path}.requestsPerMinute`);
  if (global.tokensPerMinute !== undefined) result.tokensPerMinute = positiveInteger(global.tokensPerMinute, `${path}.tokensPerMinute`);
  if (global.budget !== undefined) result.budget = parseBudget(global.budget, `${path}.budget`);
  return result;
}

function parseLog(value: unknown, path: string): LogConfig {
  const log = objectAt(value, path);
  knownFields(log, path, ['level', 'destination']);
  const result: LogConfig = {};
  if (log.level !== undefined) {
    if (!(LOG_LEVELS as readonly unknown[]).includes(log.level)) {
      const hint = typeof log.level === 'string' ? closestName(log.level, LOG_LEVELS) : undefined;
      fail(`${path}.level must be one of ${LOG_LEVELS.map((level) => `"${level}"`).join(', ')}${hint ? `; did you mean "${hint}"?` : ''}`);
    }
    result.level = log.level as LogLevel;
  }
  if (log.destination !== undefined) result.destination = nonEmptyString(log.destination, `${path}.destination`);
  return result;
}

/** The guard package's own rules judge the values, so the config and the package never disagree. */
function parseGuard(value: unknown, path: string): GuardConfig {
  const guard = objectAt(value, path);
  knownFields(guard, path, ['spendAnomaly', 'repeatedRequests', 'authFailures', 'shedding', 'bodyTimeout']);
  const sections = {
    spendAnomaly: ['bucketSeconds', 'zScore', 'minBuckets', 'minSpendUsd', 'action', 'cooldown', 'throttleScale', 'watch', 'fastWindow', 'slowWindow'],
    repeatedRequests: ['max', 'windowSeconds'],
    authFailures: ['max', 'windowSeconds', 'block', 'distinctKeys'],
  } as const;
  const result: GuardConfig = {};
  for (const [name, fields] of Object.entries(sections) as [keyof typeof sections, readonly string[]][]) {
    if (guard[name] === undefined) continue;
    knownFields(objectAt(guard[name], `${path}.${name}`), `${path}.${name}`, fields);
    (result as Record<string, unknown>)[name] = { ...(guard[name] as Json) };
  }
  try {
    resolveGuardOptions({ spendAnomaly: result.spendAnomaly ?? false, repeatedRequests: result.repeatedRequests ?? false, authFailures: result.authFailures ?? false });
  } catch (error) {
    fail(`${path}.${(error as Error).message}`);
  }
  if (guard.shedding !== undefined) result.shedding = parseShedding(guard.shedding, `${path}.shedding`);
  if (guard.bodyTimeout !== undefined) result.bodyTimeout = durationAt(guard.bodyTimeout, `${path}.bodyTimeout`);
  return result;
}

function durationAt(value: unknown, path: string): number | string {
  try {
    parseDuration(value as number | string, path);
  } catch {
    fail(`${path} must be a positive number of ms or a string like "10s", "5m"`);
  }
  return value as number | string;
}

function parseShedding(value: unknown, path: string): SheddingConfig {
  const shedding = objectAt(value, path);
  knownFields(shedding, path, ['priorities', 'maxConcurrency', 'maxEventLoopDelay', 'maxUpstreamErrorRate']);
  const result: SheddingConfig = {};
  if (shedding.priorities !== undefined) {
    result.priorities = recordOf(shedding.priorities, `${path}.priorities`, (entry, entryPath) => {
      if (typeof entry !== 'number' || !Number.isFinite(entry)) fail(`${entryPath} must be a number (higher keeps service longer)`);
      return entry;
    });
  }
  if (shedding.maxConcurrency !== undefined) result.maxConcurrency = positiveInteger(shedding.maxConcurrency, `${path}.maxConcurrency`);
  if (shedding.maxEventLoopDelay !== undefined) result.maxEventLoopDelay = durationAt(shedding.maxEventLoopDelay, `${path}.maxEventLoopDelay`);
  if (shedding.maxUpstreamErrorRate !== undefined) {
    const rate = shedding.maxUpstreamErrorRate;
    if (typeof rate !== 'number' || !(rate > 0 && rate <= 1)) fail(`${path}.maxUpstreamErrorRate must be a fraction greater than 0 and at most 1`);
    result.maxUpstreamErrorRate = rate;
  }
  return result;
}

/** Express's own check of a `trust proxy` value (it compiles the addresses and subnets at once). */
function parseTrustProxy(value: unknown, path: string): boolean | number | string | string[] {
  const shapeOk = typeof value === 'boolean' || (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) || (typeof value === 'string' && value.trim().length > 0)
    || (Array.isArray(value) && value.length > 0 && value.every((item) => typeof item === 'string' && item.trim().length > 0));
  if (!shapeOk) fail(`${path} must be true, false, a number of hops, or addresses/subnets/names like "loopback" (a string or an array of strings)`);
  try {
    express().set('trust proxy', value);
  } catch (error) {
    fail(`${path}: ${(error as Error).message}`);
  }
  return value as boolean | number | string | string[];
}

function parseAlerts(value: unknown, path: string): { webhooks?: WebhookConfig[] } {
  const alerts = objectAt(value, path);
  knownFields(alerts, path, ['webhooks']);
  if (alerts.webhooks === undefined) return {};
  if (!Array.isArray(alerts.webhooks)) fail(`${path}.webhooks must be an array`);
  return {
    webhooks: alerts.webhooks.map((entry, i) => {
      const where = `${path}.webhooks[${i}]`;
      const hook = objectAt(entry, where);
      knownFields(hook, where, ['url', 'secretEnv', 'format']);
      const result: WebhookConfig = { url: httpUrl(hook.url, `${where}.url`, ['http:', 'https:']) };
      if (hook.secretEnv !== undefined) {
        const env = nonEmptyString(hook.secretEnv, `${where}.secretEnv`);
        if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(env)) fail(`${where}.secretEnv must be an environment variable name`);
        result.secretEnv = env;
      }
      if (hook.format !== undefined) {
        if (hook.format !== 'json' && hook.format !== 'slack') fail(`${where}.format must be "json" or "slack"`);
        result.format = hook.format;
      }
      return result;
    }),
  };
}

const TOP_LEVEL = [
  'port', 'redisUrl', 'redis', 'redisPrefix', 'storeOutage', 'usageLog', 'postgresUrl', 'postgresSchema', 'postgresTable', 'embeddedLedger', 'spool', 'adminKeySha256', 'bodyLimit', 'defaultTier',
  'requiredScope', 'metrics',
  'upstreams', 'models', 'tiers', 'tenants', 'keys', 'jwt', 'global', 'log', 'guard', 'trustProxy', 'alerts',
  'cache',
  ...ROUTING_FIELDS,
] as const;

/**
 * Validates a parsed JSON config and returns a clean copy. Throws ConfigError naming the
 * first faulty field (e.g. `tiers.free.requestsPerMinute must be a positive integer`).
 */
export function validateConfig(input: unknown): ProxyConfig {
  const raw = objectAt(input, 'the config');
  knownFields(raw, '', TOP_LEVEL);
  const config: ProxyConfig = {};
  if (raw.port !== undefined) {
    const port = raw.port;
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) fail('port must be an integer from 0 to 65535');
    config.port = port;
  }
  if (raw.redisUrl !== undefined) config.redisUrl = httpUrl(raw.redisUrl, 'redisUrl', ['redis:', 'rediss:']);
  if (raw.redis !== undefined) {
    config.redis = parseRedis(raw.redis, 'redis');
    if (config.redis.cluster && config.redisUrl !== undefined) fail('redisUrl and redis.cluster are two ways to reach Redis: give one');
  }
  if (raw.redisPrefix !== undefined) config.redisPrefix = nonEmptyString(raw.redisPrefix, 'redisPrefix');
  if (raw.storeOutage !== undefined) config.storeOutage = parseStoreOutage(raw.storeOutage);
  if (raw.usageLog !== undefined) config.usageLog = nonEmptyString(raw.usageLog, 'usageLog');
  if (raw.postgresUrl !== undefined) config.postgresUrl = httpUrl(raw.postgresUrl, 'postgresUrl', ['postgres:', 'postgresql:']);
  for (const field of ['postgresSchema', 'postgresTable'] as const) {
    if (raw[field] === undefined) continue;
    const name = nonEmptyString(raw[field], field);
    if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(name)) fail(`${field} must be a plain SQL identifier (letters, digits, _)`);
    config[field] = name;
  }
  if (raw.embeddedLedger !== undefined) {
    const embedded = raw.embeddedLedger;
    if (typeof embedded !== 'boolean' && (typeof embedded !== 'string' || embedded.trim().length === 0)) fail('embeddedLedger must be true (in memory), false, or a directory path');
    if (embedded !== false && raw.postgresUrl !== undefined) fail('embeddedLedger and postgresUrl are two ledgers: give one');
    config.embeddedLedger = embedded as boolean | string;
  }
  if (raw.spool !== undefined) {
    if (raw.spool !== false && (typeof raw.spool !== 'string' || raw.spool.trim().length === 0)) fail('spool must be a directory path, or false to turn the spool off');
    config.spool = raw.spool;
  }
  if (raw.adminKeySha256 !== undefined) config.adminKeySha256 = sha256Hex(raw.adminKeySha256, 'adminKeySha256');
  if (raw.metrics !== undefined) {
    const metrics = objectAt(raw.metrics, 'metrics');
    knownFields(metrics, 'metrics', ['public']);
    if (typeof metrics.public !== 'boolean') fail('metrics.public must be true or false');
    config.metrics = { public: metrics.public };
  }
  if (raw.bodyLimit !== undefined) {
    const limit = raw.bodyLimit;
    const ok = (typeof limit === 'number' && Number.isSafeInteger(limit) && limit > 0) || (typeof limit === 'string' && /^\d+(\.\d+)?\s*(b|kb|mb|gb)?$/i.test(limit.trim()));
    if (!ok) fail('bodyLimit must be a positive number of bytes or a size like "1mb"');
    config.bodyLimit = limit as number | string;
  }
  if (raw.defaultTier !== undefined) config.defaultTier = nonEmptyString(raw.defaultTier, 'defaultTier');
  if (raw.requiredScope !== undefined) config.requiredScope = nonEmptyString(raw.requiredScope, 'requiredScope');
  if (raw.upstreams !== undefined) config.upstreams = recordOf(raw.upstreams, 'upstreams', parseUpstream);
  if (raw.models !== undefined) config.models = recordOf(raw.models, 'models', parseModel);
  if (raw.tiers !== undefined) config.tiers = recordOf(raw.tiers, 'tiers', parseTier);
  if (raw.tenants !== undefined) config.tenants = recordOf(raw.tenants, 'tenants', parseTenant);
  if (raw.keys !== undefined) {
    if (!Array.isArray(raw.keys)) fail('keys must be an array');
    config.keys = raw.keys.map((key, i) => parseKey(key, `keys[${i}]`));
  }
  if (raw.jwt !== undefined) config.jwt = parseJwt(raw.jwt, 'jwt');
  if (raw.global !== undefined) config.global = parseGlobal(raw.global, 'global');
  if (raw.log !== undefined) config.log = parseLog(raw.log, 'log');
  if (raw.guard !== undefined) config.guard = parseGuard(raw.guard, 'guard');
  if (raw.trustProxy !== undefined) config.trustProxy = parseTrustProxy(raw.trustProxy, 'trustProxy');
  if (raw.alerts !== undefined) config.alerts = parseAlerts(raw.alerts, 'alerts');
  if (raw.cache !== undefined) config.cache = parseCache(raw.cache, 'cache');
  // Checked by the router's own option rules (routing-config.ts), so that the two never disagree.
  for (const field of ROUTING_FIELDS) if (raw[field] !== undefined) Object.assign(config, { [field]: raw[field] });
  checkReferences(config);
  const routingProblem = checkRouting(config);
  if (routingProblem) fail(routingProblem);
  return config;
}

/** The providers whose APIs the built-in mock speaks. */
const MOCK_PROVIDERS: readonly string[] = ['openai', 'anthropic', 'google'];

/** Names that point elsewhere in the config must exist there. */
function checkReferences(config: ProxyConfig): void {
  const tiers = config.tiers ?? {};
  const tenants = config.tenants ?? {};
  const hasTier = (name: string) => Object.hasOwn(tiers, name);
  const tierHint = (name: string) => {
    const hint = closestName(name, Object.keys(tiers));
    return hint ? `; did you mean "${hint}"?` : '';
  };
  if (config.defaultTier !== undefined && !hasTier(config.defaultTier)) fail(`defaultTier names an unknown tier "${config.defaultTier}"${tierHint(config.defaultTier)}`);
  for (const [name, tenant] of Object.entries(tenants)) {
    if (tenant.tier !== undefined && !hasTier(tenant.tier)) fail(`tenants.${name}.tier names an unknown tier "${tenant.tier}"${tierHint(tenant.tier)}`);
  }
  const ids = new Set<string>();
  const hashes = new Set<string>();
  (config.keys ?? []).forEach((key, i) => {
    if (key.tier !== undefined && !hasTier(key.tier)) fail(`keys[${i}].tier names an unknown tier "${key.tier}"${tierHint(key.tier)}`);
    if (key.tenant !== undefined && !Object.hasOwn(tenants, key.tenant)) {
      const hint = closestName(key.tenant, Object.keys(tenants));
      fail(`keys[${i}].tenant names an unknown tenant "${key.tenant}"${hint ? `; did you mean "${hint}"?` : ''}`);
    }
    if (ids.has(key.id)) fail(`keys[${i}].id "${key.id}" is used twice`);
    if (hashes.has(key.sha256)) fail(`keys[${i}].sha256 is used twice`);
    ids.add(key.id);
    hashes.add(key.sha256);
  });
  const upstreams = config.upstreams;
  for (const [name, model] of Object.entries(config.models ?? {})) {
    const known = upstreams ? Object.hasOwn(upstreams, model.provider) : MOCK_PROVIDERS.includes(model.provider);
    if (!known) fail(`models.${name}.provider names "${model.provider}", which is not ${upstreams ? 'a key of upstreams' : `${MOCK_PROVIDERS.map((provider) => `"${provider}"`).join(', ')} (the mock serves only those)`}`);
  }
  for (const tier of Object.keys(config.guard?.shedding?.priorities ?? {})) {
    if (!hasTier(tier)) fail(`guard.shedding.priorities names an unknown tier "${tier}"${tierHint(tier)}`);
  }
}

/** Parses JSON text and validates it; JSON syntax errors become ConfigErrors too. */
export function parseConfig(text: string, source = 'the config'): ProxyConfig {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`${source} is not valid JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
  return validateConfig(parsed);
}
