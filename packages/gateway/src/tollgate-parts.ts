// What tollgate() is built from: each part the options of the package that owns it (apiKeyAuth's, tierPolicy's,
// meter's, budgetGuard's...), and what a deployment made already (partsFromConfig). Types only: the one assembly
// (compose-chain.ts) and tollgate() (compose.ts) both read them.
import type { RequestListener, Server } from 'node:http';
import type { Router } from 'express';
import type { ApiKeyAuthOptions, AttributionOptions } from '@tollgate/auth';
import type { BudgetGuard, BudgetGuardOptions } from '@tollgate/budget';
import type { ResponseCacheOptions } from '@tollgate/cache';
import type { Pricing, TollgateStores } from '@tollgate/core';
import type { GuardOptions, LoadShedderOptions, PromptGuardrailsOptions, WebhookOptions } from '@tollgate/guard';
import type { McpGatewayOptions } from '@tollgate/mcp';
import type { MeterOptions } from '@tollgate/metering';
import type {
  ConcurrencyLimitOptions,
  TieredRateLimitOptions,
  TierPolicyOptions,
  TokenRateLimitOptions,
} from '@tollgate/ratelimit';
import type { createProviderRouter, ProviderRouter } from '@tollgate/router/upstreams';
import type { BatchBook } from './batch/batch-book.js';
import type { CacheStages } from '@tollgate/cache/stages';
import type { GatewayGuard } from './guard-setup.js';
import type { GatewayMetering } from './metering-setup.js';

/** The guard's checks in `tollgate()`: each off unless given (as @tollgate/guard's `createGuard` takes it). */
export interface TollgateGuardParts extends Pick<
  GuardOptions,
  'spendAnomaly' | 'repeatedRequests' | 'authFailures' | 'abuse'
> {
  /** Lower tiers get 503 first when the process is saturated. @default none */
  shedding?: Omit<LoadShedderOptions, 'renderError'>;
  /** How long a body may take to arrive once the caller is identified: ms or "10s". @default '10s' */
  bodyTimeout?: number | string;
  /** Where each alert is POSTed. @default none (alerts are logged only) */
  webhooks?: WebhookOptions[];
  /** Where each alert is logged, one JSON line. @default console.warn */
  log?: (line: string) => void;
}

/** MCP servers at `/mcp/<server>` (@tollgate/mcp, an optional peer), behind the same guard, auth, limits and budget. */
export interface TollgateMcpParts extends Omit<McpGatewayOptions, 'stages'> {
  /** @tollgate/ratelimit `tieredRateLimit`: tool calls counted apart from the request limits. @default none */
  toolCalls?: Omit<TieredRateLimitOptions, 'stores'>;
}

/** The Batch API (/v1/files, /v1/batches, docs/batch.md), served where an OpenAI upstream of `providers` is. */
export interface TollgateBatchParts {
  /** Where files and jobs are kept. @default on Redis stores Redis, else this process's memory */
  book?: BatchBook | undefined;
  /** How often jobs nobody polls are asked about upstream and settled. @default 5 minutes */
  sweepMs?: number | undefined;
}

/**
 * Parts a deployment made already because routes of its own share them (createGateway's operator routes): each is
 * used as it is, in place of the one `tollgate()` would make from the options. partsFromConfig fills them; a library
 * user leaves them out.
 */
export interface TollgateMadeParts {
  /**
   * The stores as the chain uses them: `timed` for the metrics (concurrency), `limits` behind a lease or in blocks
   * (request, token and tool-call limits).
   */
  storeViews: { timed: TollgateStores; limits: TollgateStores };
  /** The guard, whose admin routes the deployment serves. */
  guard: GatewayGuard;
  /** The one price table (refreshed from a price source). */
  pricing: Pricing;
  providers: ProviderRouter;
  /** The meter and its charges (tool calls, Realtime, Batch records), over the deployment's sinks. */
  metering: Pick<GatewayMetering, 'meter' | 'chargeToolCall' | 'chargeRealtimeResponse' | 'deliverRecord'>;
  budget: BudgetGuard;
  cache: CacheStages | undefined;
  /** Closes what the deployment made, once the chain's own work (sockets, Batch, MCP) ended. */
  close(): Promise<void>;
}

/** What `tollgate()` is built from: each part the options of the package that owns it, all but none required. */
export interface TollgateParts {
  /** @default in-memory stores, closed by `close()` */
  stores?: TollgateStores;
  /** @tollgate/auth `apiKeyAuth`. @default `{ keys: stores.keys }` */
  auth?: Partial<ApiKeyAuthOptions>;
  /**
   * Shadow mode: every limit and budget counted, none refusing (what each would have refused is logged and marked on
   * the answer), for every caller (`true`) or those of these tiers and tenants, and of the tenants `tenantShadowed`
   * says (read on each request: a tenant directory's). @default none
   */
  shadow?: true | { tiers?: readonly string[]; tenants?: readonly string[]; tenantShadowed?: (id: string) => boolean };
  /** @tollgate/auth `requireScope`: the scope every caller must hold. @default none */
  scope?: string;
  /** @tollgate/auth `attribution`: who each call is for. @default from the key only */
  attribution?: AttributionOptions;
  /** @tollgate/ratelimit `tierPolicy`: each tier's models and output cap. @default every model */
  policy?: TierPolicyOptions;
  /** @tollgate/guard `promptGuardrails`. @default none */
  guardrails?: PromptGuardrailsOptions;
  /**
   * @tollgate/guard's checks at their stages: address blocks and auth floods before auth (`guardAdmit`), shedding and
   * the body deadline after it (`bodyGuard`), suspended keys and tenants after the estimate, repeated requests with the
   * request limits; the meter's records feed its spend and abuse models, budget events reach its alerts. @default none
   */
  guard?: TollgateGuardParts;
  /** @tollgate/metering `meter`. @default priced by the built-in catalogue, no sink */
  meter?: MeterOptions;
  /** @tollgate/ratelimit's limiters, on `stores`, fused with the budget in one round trip. @default none */
  limits?: {
    requests?: Omit<TieredRateLimitOptions, 'stores'>;
    tokens?: Omit<TokenRateLimitOptions, 'stores'>;
    concurrency?: Omit<ConcurrencyLimitOptions, 'stores'>;
  };
  /** @tollgate/budget `budgetGuard`, on `stores.ledger`. @default none */
  budget?: Omit<BudgetGuardOptions, 'ledger'>;
  /** @tollgate/cache `createResponseCache`. @default none */
  cache?: ResponseCacheOptions;
  /** Where calls go: the config's `upstreams` and `models` sections. @default the built-in mock provider */
  providers?: Pick<Parameters<typeof createProviderRouter>[0], 'upstreams' | 'models'> & { env?: NodeJS.ProcessEnv };
  /** The largest request body. @default '1mb' */
  bodyLimit?: string | number;
  /** The most bytes of a multipart upload (transcriptions), read whole before the call. @default '25mb' */
  uploadLimit?: string | number;
  /** @default none */
  mcp?: TollgateMcpParts;
  /** @default none */
  batch?: TollgateBatchParts;
  /**
   * The WebSocket modes: the Responses API's on `/v1/responses` and Realtime's on `/v1/realtime`, served once the
   * router is attached to the server (`attachSockets`). @default off
   */
  sockets?: boolean;
  /** Operator log lines (never secrets): a Batch sweep that failed, a socket's end. @default console.error */
  log?: (line: string) => void;
  /** @default none: each part made from the options above */
  made?: TollgateMadeParts;
}

/** What `tollgate()` returns: an Express router to mount, and the close of what it made. */
export interface TollgateRouter extends Router {
  readonly stores: TollgateStores;
  /** With `sockets`: serves the WebSocket modes on `server`'s upgrades; `app` is the listener the router runs in. */
  attachSockets?(server: Server, app: RequestListener): void;
  /** Ends the upstream calls, then closes what `tollgate()` made (the stores too, when it made them). */
  close(): Promise<void>;
}
