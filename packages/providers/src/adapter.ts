// The provider adapter: everything specific to one provider API, behind one object.
import type { CallAdapter } from '@tollgate/core';
import type { RequestCounter } from './counter.js';
import type { Json } from './json.js';
import type { UsageReader } from './usage.js';

/**
 * One per API. Core's part (`CallAdapter`: read the request, write model and cap, read an SDK
 * answer's usage) lets the request context own the call's state; the rest lets the meter estimate
 * the request, read usage as the answer streams past, and end a stream cut at its grant.
 */
export interface ProviderAdapter extends CallAdapter {
  /**
   * How OpenTelemetry's GenAI semantic conventions name this API's calls: `gen_ai.operation.name`
   * and `gen_ai.provider.name` (absent: the provider that served the call is named, as for a
   * self-hosted server). The meter's span reads it. @default `{ operation: 'chat' }`
   */
  readonly genAi?: { readonly operation: string; readonly provider?: string };
  /** Input tokens of a request body, framed the way this API renders it into the prompt. */
  countInput(counter: RequestCounter, body: Json): number;
  /**
   * Makes a streamed answer report its usage (OpenAI chat: `stream_options.include_usage`);
   * returns true when it added something the client did not ask for (the meter strips it).
   */
  requestStreamUsage(body: Json): boolean;
  /**
   * A reader for one answer. `stripAddedUsage`: the usage chunk `requestStreamUsage` added is
   * flagged. `request`: the body as sent, for an ending that matches what the client asked for.
   */
  createReader(options?: { stripAddedUsage?: boolean; request?: Json }): UsageReader;
  /**
   * The top-level fields of a whole JSON answer that carry its usage and model. The meter finds them
   * by scanning the answer and feeds the reader a body of just those; when that usage is not complete,
   * or the scan is unsure, the answer is parsed whole. @default none: the answer is always parsed whole
   */
  readonly answerUsageFields?: readonly string[];
}
