// What a provider API is to the rest of the chain: its name, and the few body operations every guard needs.
import type { ReportedUsage } from './context.js';
import type { MediaUsage, Provider } from './types.js';

/**
 * The provider APIs tollgate meters. A route declares the one it speaks (never guessed from a
 * path); `@tollgate/providers` has one adapter per API, and its registry is the list of them
 * (`providerApis()`, `isProviderApi()`).
 */
export type ProviderApi =
  | 'openai.chat'
  | 'openai.responses'
  | 'anthropic.messages'
  | 'openai.compatible'
  | 'gemini.generate'
  | 'mistral.chat'
  | 'openai.embeddings'
  | 'openai.speech'
  | 'openai.images'
  | 'openai.transcriptions';

/** What an adapter reads from a request, once, when the call is declared. */
export interface CallShape {
  /** The model asked for, or undefined when the request names none. */
  model: string | undefined;
  /** The output cap asked for (per choice), or undefined. */
  outputCap: number | undefined;
  stream: boolean;
  /** Completions asked for, each up to the cap (OpenAI chat `n`); 1 elsewhere. */
  choices: number;
  /** The service tier asked for (OpenAI's `service_tier`), which the reservation is priced at. Absent: none. */
  serviceTier?: string;
  /** The speed asked for (Anthropic's `speed`: `fast`), which the reservation is priced at. Absent: none. */
  speed?: string;
  /** Where inference is asked to run (Anthropic's `inference_geo`: `us`), which the reservation is priced at. Absent: none. */
  inferenceGeo?: string;
  /**
   * The media the request asks for at most (an image call's images, a speech call's characters, a transcription's
   * audio bound), which the reservation is priced at (see `MediaUsage`). Absent: none.
   */
  media?: MediaUsage;
}

/** The parts of a request an adapter reads: the JSON body, and the route's params (Gemini names the model in its path). */
export interface CallRequest {
  body: unknown;
  params?: Record<string, string | string[] | undefined>;
}

/**
 * The part of a provider adapter that core needs to own a call's state: read the request, write
 * the model and the output cap back into it. The full adapter (estimates, usage, stream endings)
 * is `ProviderAdapter` in `@tollgate/providers`.
 */
export interface CallAdapter {
  readonly api: ProviderApi;
  /** The provider a model of this API is attributed to when the catalogue does not say. */
  readonly provider: Provider;
  /** Reads model, cap, stream flag and choices; never throws (missing fields are undefined). */
  read(request: CallRequest): CallShape;
  /** Writes the cap into every field the API (and the servers that speak it) may read it from. */
  writeOutputCap(body: Record<string, unknown>, cap: number): void;
  /** Writes the model the call will run with (a downgrade). */
  writeModel(body: Record<string, unknown>, model: string): void;
  /** Usage and model of a whole JSON answer (what an SDK returns), or undefined when it has none. */
  readUsage(response: unknown): ReportedUsage | undefined;
  /**
   * Where a request body names its end user for the provider's own abuse tracking, as a dotted path (`user` on
   * OpenAI's APIs, `metadata.user_id` on Anthropic's). Attribution reads it (`@tollgate/auth` attribution()).
   * Absent: the API has no such field.
   */
  readonly endUserField?: string;
}

/** `*` matches anything; `prefix*` matches by prefix; otherwise exact. The one pattern rule of every allowlist. */
export function isNameAllowed(name: string, patterns: readonly string[]): boolean {
  for (const pattern of patterns) if (matchesPattern(name, pattern)) return true;
  return false;
}

function matchesPattern(name: string, pattern: string): boolean {
  return pattern === '*' || pattern === name || (pattern.endsWith('*') && name.startsWith(pattern.slice(0, -1)));
}

/** As `isNameAllowed`, and a dated model id (`gpt-4o-2024-08-06`, `...-latest`) matches its family's name too. */
export function isModelAllowed(model: string, patterns: readonly string[]): boolean {
  for (const pattern of patterns) {
    if (matchesPattern(model, pattern)) return true;
    if (model.startsWith(`${pattern}-`) && /^-(\d{4}-\d{2}-\d{2}|\d{8}|latest)$/.test(model.slice(pattern.length)))
      return true;
  }
  return false;
}

/** How one upstream call ended: the router's forwarding reports it, the proxy's metrics count it. */
export interface UpstreamOutcome {
  /** The provider's HTTP status; 0 when it gave none. */
  status: number;
  /**
   * What went wrong, if anything: `status` (a 5xx or 3xx), `credentials` (it refused the gateway's key),
   * `timeout`, `unreachable`, `cut` (failed mid-answer). A 4xx passed on to the client is no upstream error.
   */
  error?: 'status' | 'credentials' | 'timeout' | 'unreachable' | 'cut';
  /** From the request leaving to the end of the answer (or the failure). */
  seconds: number;
  /** Streams only: from the request leaving to the answer's first bytes written to the client. */
  firstTokenSeconds?: number;
}
