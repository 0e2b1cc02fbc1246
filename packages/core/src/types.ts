// The shared vocabulary: who calls (Identity), what a request may cost (UsageEstimate) and what it did (UsageRecord).
import type { ApiErrorCode, RefusalLayer } from './api-error.js';
import type { ProviderApi } from './provider-api.js';

export type Provider = 'openai' | 'anthropic' | (string & {});

export type AuthMethod = 'api_key' | 'bearer' | 'jwt' | 'anonymous';

/** Who is calling, answered once by an auth middleware for every later one. */
export interface Identity {
  /** Stable id of the credential (never the key itself). For JWTs, `jwt:<sub>`. */
  keyId: string;
  tenantId?: string;
  userId?: string;
  /**
   * The end-user value the request's body sent (Anthropic's `metadata.user_id`, OpenAI's `user`) when it cannot be a
   * user id (longer than attribution's `maxLength`, or unprintable): kept for attribution only, never a user, so no
   * budget or limit counts it. At most 1024 printable characters as sent, else `sha256:<hex>` of it. Absent: none.
   */
  clientUserId?: string;
  /**
   * The agent session the request belongs to (`@tollgate/auth` attribution(): Claude Code's `x-claude-code-session-id`,
   * Codex's `session-id`), 1 to 128 letters, digits or `. : @ - _`: the record's `session`, a session budget's scope.
   */
  sessionId?: string;
  /**
   * The team of the caller's tenant the request is charged to (the key's `team`, else attribution()'s team header):
   * the record's `team`, the scope of a team budget and of its members' budgets. Absent: none.
   */
  team?: string;
  tier?: string;
  scopes: string[];
  /** The product feature the call is made for, for cost attribution. */
  feature?: string;
  /**
   * Free labels of the request, for cost attribution (`@tollgate/auth` attribution(): the tags header). Absent = none.
   */
  tags?: string[];
  authMethod: AuthMethod;
  /** Models this identity may use (`*` = any); absent = no identity-level restriction. */
  models?: string[];
  /**
   * MCP tools this identity may call, as `server/tool` patterns (`search/*`, `*`): a grant besides
   * its tier's and its tenant's (the gateway allows a tool any of them lists). Absent = none of its own.
   */
  tools?: string[];
  /**
   * The budget the credential carries (an API key record's `budget`), with the key id its spend counts under
   * (`keyBudgetScope`: a rotated key continues its predecessor's). Absent: none of its own.
   */
  keyBudget?: KeyBudget;
}

/** A key's own budget as a request carries it: its limits (the config's form) and the key id it counts under. */
export interface KeyBudget {
  keyId: string;
  limits: unknown;
}

/**
 * Token counts of one call, by price class. `inputTokens` is the whole prompt:
 * it *includes* `cachedInputTokens` and `cacheWriteTokens`; `outputTokens` includes
 * `reasoningTokens`. Cost prices each token once, in its own class.
 */
export interface TokenUsage {
  inputTokens: number;
  cachedInputTokens: number;
  cacheWriteTokens: number;
  outputTokens: number;
  reasoningTokens: number;
  /** Of `cacheWriteTokens`, those written with a 1-hour lifetime (Anthropic), priced apart. Absent = none. */
  cacheWrite1hTokens?: number;
  /**
   * The service tier the provider says served the call (OpenAI's `service_tier`: `default`, `flex`, `priority`;
   * Anthropic's `usage.service_tier`), which prices it (see `ModelPrice.serviceTiers`). Absent = not said.
   */
  serviceTier?: string;
  /**
   * The speed the provider says it ran at (Anthropic's `usage.speed`: `standard`, `fast`), which prices it (see
   * `ModelPrice.speeds`). Absent = not said.
   */
  speed?: string;
  /**
   * Where the provider says inference ran (Anthropic's `usage.inference_geo`: `global`, `us`), which prices it (see
   * `ModelPrice.inferenceGeos`). Absent = not said.
   */
  inferenceGeo?: string;
  /**
   * The model calls one answer was made of, each billed at its own model's price (Anthropic's `usage.iterations`:
   * compaction, advisor and fallback calls besides the answer's own). The counts above are their sums. Absent = one call.
   */
  iterations?: UsageIteration[];
  /**
   * What an audio or image call used beyond the text tokens above (transcriptions, speech, image generation), each
   * billed in the unit the model's row prices (see `MediaUsage`). Absent = none.
   */
  media?: MediaUsage;
}

/**
 * The media of one call, beside its text tokens (`inputTokens`, `outputTokens` count text only when this is present):
 * audio and image tokens, and the units some models are billed in instead of tokens. A model's row prices the units
 * it bills (`ModelPrice.audioPerMinute`, `perMCharacters`, `perImage`); a unit its row does not price is not billed,
 * except media tokens, which fall back to the text price of their direction. See docs/prices.md.
 */
export interface MediaUsage {
  /** Audio tokens read (gpt-4o-transcribe's `input_token_details.audio_tokens`). */
  audioInputTokens?: number;
  /** Of `audioInputTokens`, those read from the prompt cache (Realtime), priced at the cached audio price. */
  cachedAudioInputTokens?: number;
  /** Audio tokens written (gpt-4o-mini-tts's output). */
  audioOutputTokens?: number;
  /** Image tokens read (an edit's input images). */
  imageInputTokens?: number;
  /** Image tokens written (gpt-image-1's `usage.output_tokens`). */
  imageOutputTokens?: number;
  /**
   * A transcription request's bound on its transcript's text tokens, billed at the output price: what it reserves,
   * since nothing caps a transcript (its answer's text tokens are its `outputTokens`).
   */
  transcriptTokens?: number;
  /** Seconds of audio, for a model billed by the minute (whisper-1). */
  audioSeconds?: number;
  /** Characters of text, for a model billed per character (tts-1). */
  characters?: number;
  /** Images made, for a model billed per image (dall-e-3), at the price of `imageQuality` and `imageSize`. */
  images?: number;
  /** The size of the images (`1024x1024`). */
  imageSize?: string;
  /** The quality of the images (`standard`, `hd`). */
  imageQuality?: string;
}

/** One model call of several behind one answer (see `TokenUsage.iterations`), counted by price class as `TokenUsage` is. */
export interface UsageIteration {
  /** What the call was, as the provider names it (`message`, `compaction`, `advisor_message`, `fallback_message`). */
  kind: string;
  /** The model that ran it; absent: the answer's own. */
  model?: string;
  inputTokens: number;
  cachedInputTokens: number;
  cacheWriteTokens: number;
  cacheWrite1hTokens?: number;
  outputTokens: number;
}

/** What a request may cost at most, computed before the provider call. */
export interface UsageEstimate {
  provider: Provider;
  /** The provider API the estimate was made for (the declared call's). */
  api?: ProviderApi;
  model: string;
  inputTokens: number;
  /**
   * The most input tokens the provider can bill for this request, whatever its tokenizer: the
   * estimate with its text counted at its UTF-8 bytes (a token covers at least one byte), or the
   * model's context window when the request pulls in content its body does not hold (files by id,
   * earlier responses, server tools). Budgets reserve this. Absent: `inputTokens` is the bound.
   */
  inputTokensBound?: number;
  /** The output cap the request runs with (after any clamp), per choice. */
  maxOutputTokens: number;
  /**
   * How many completions the request asks for, each up to `maxOutputTokens` (OpenAI chat `n`);
   * the cost bound and `totalTokens` count all of them. Absent = 1.
   */
  outputChoices?: number;
  /**
   * The media the request asks for at most (images, characters, seconds or media tokens), priced at the model's
   * units: the call cannot be capped below it, so a budget reserves all of it or refuses. Absent = none.
   */
  media?: MediaUsage;
  /** Upper bound of the cost in nano-USD: input at its priciest class (see core `maxCostNanoUsd`) + cap x choices at the output price. */
  costNanoUsd: number;
  /** Tokens reserved against token limits: input + output cap. */
  totalTokens: number;
}

/**
 * Where the token counts come from: the provider's usage, output counted as it passed, output the
 * provider's own token count counted after the fact (`provider-counted`: an answer without usage
 * whose tokenizer is not published, Claude's, counted by its upstream's `count_tokens`), or, for an
 * answer that never came whole and may be billed whole (a JSON call the client left, an answer the
 * upstream cut, a call in flight when its process died), the reservation's bound; or a response
 * cache that answered with an answer it stored (the counts are the stored answer's).
 */
export type UsageSource = 'provider' | 'counted' | 'provider-counted' | 'estimated' | 'cache';

/** One line of the usage log: the settled truth of one request. */
export interface UsageRecord extends TokenUsage {
  /** What was called: `tool` for an MCP tool call (priced per call, no tokens). Absent = a model call. */
  kind?: 'tool';
  /** The tool of a `tool` record, as `server/tool` (`search/web_search`). */
  tool?: string;
  /**
   * The record's own id, made by the server (a UUID): the ledger's key. Retries of the same record
   * keep it, so inserts stay idempotent; no client can choose or reuse it.
   */
  id: string;
  /** The request id echoed to the client (its valid `x-request-id`, else generated): an attribute, never a key. */
  requestId: string;
  /**
   * The caller's own conversation id (its `x-conversation-id` header), which outcomes can be reported
   * against (`recordOutcome` in @tollgate/metering). Null or absent: none was sent.
   */
  conversationId?: string | null;
  /** ISO 8601 time the request started. */
  timestamp: string;
  keyId: string | null;
  tenantId: string | null;
  userId: string | null;
  /** The body's end-user value that could not be a user id (`Identity.clientUserId`). Absent = none. */
  clientUserId?: string;
  /** The agent session the request belongs to (`Identity.sessionId`). Absent = none was sent. */
  session?: string;
  /** The team of the tenant the request was charged to (`Identity.team`). Absent = none. */
  team?: string;
  feature: string | null;
  /** The request's tags (the identity's, from attribution()), in the order sent. Absent = none. */
  tags?: string[];
  route: string;
  provider: Provider | null;
  /** The model as billed (after a downgrade). */
  model: string | null;
  /** The model the client asked for. */
  requestedModel: string | null;
  costNanoUsd: number;
  estimatedCostNanoUsd: number;
  /**
   * The version of the prices the record was billed with (`Pricing.version`: a hash of the whole table in
   * use), so that a report can be recomputed at the prices of the time. Absent: a record made before.
   */
  priceVersion?: string;
  /**
   * HTTP status sent to the client; 0 when none was: the process died with the call sent upstream,
   * and the record was rebuilt at the next start from the usage spool, at the reservation's bound.
   * A tool call's answer is a JSON-RPC message either way: its status is the one an HTTP route
   * would have sent (200 answered, the refusal's 403/429/503, 502 or 504 when the MCP server failed).
   */
  status: number;
  stream: boolean;
  /** The client went away before the response finished. */
  aborted: boolean;
  /** The provider cut an answer that had started (the client did not leave). Absent = no. */
  upstreamAborted?: boolean;
  /**
   * The piece of tollgate that refused the request (`requests`, `budget`, `guard`, ...: the refusal's
   * layer), so the provider never saw it. Absent: not refused by tollgate; an upstream failure
   * (`upstream_error`, a provider's own 4xx/5xx passed on) is the provider's and leaves it absent.
   */
  refusedBy?: RefusalLayer;
  /**
   * The code of the refusal a shadow let through (`shadowMode`): a limit, a budget or the guard would have refused
   * the request with it, and it was served. Absent: nothing would have refused it.
   */
  shadowRefusal?: ApiErrorCode;
  /** The guard's abuse score of the caller when it was admitted ([0, 1], higher is stranger). Absent: not scored. */
  abuseScore?: number;
  latencyMs: number;
  usageSource: UsageSource;
  /**
   * The answer ran past the output cap it was sent with (an upstream that ignores the cap): a
   * stream stopped one event past its grant, or a JSON answer billed at its real, larger cost.
   */
  outputOverCap?: boolean;
  /**
   * The output was counted (`usageSource` `counted`) by a count that can only over-state the provider's, as its
   * tokenizer is not published (Claude): an upper bound of what the provider bills, not its count. Absent: the
   * provider's count, or an exact one by the provider's own tokenizer.
   */
  outputUpperBound?: boolean;
  /**
   * What the settle charged above the budget reservation (nano-USD): the provider billed past the
   * request's provable bound. Set by budgetGuard before the sinks see the record. Absent = none.
   */
  overshootNanoUsd?: number;
  /**
   * What caching saved (nano-USD): on a response-cache hit the answer's cost less what was billed;
   * on a provider call, the discount its cached input tokens got. Absent = nothing saved.
   */
  savedNanoUsd?: number;
}
