// The provider's own count of an answer's text (its API's token count), for the bill of an answer our count only bounds.
import type { Dispatcher } from 'undici';
import type { ProviderApi } from '@tollgate/core';
import { adapterFor } from '@tollgate/providers';
import type { UpstreamRequests } from './upstream-wire.js';

/** How long a count may take before the answer is billed its upper count instead (an upstream's `countTimeoutMs`). */
export const DEFAULT_COUNT_TIMEOUT_MS = 5000;
/**
 * The text whose message measures a count's fixed part (the message around the text): one ASCII character, one token
 * in any byte-level vocabulary. A provider refuses an empty message, so "" cannot measure it.
 */
const PROBE_TEXT = '.';
/** Fixed parts kept per API and model: the models a gateway calls are the priced ones, a bounded few. */
const MAX_KEPT_OVERHEADS = 1000;

/** An upstream's counts of output texts. */
interface OutputCounts {
  /** The count of one output text, for a call of `api` to `model`; undefined where the API cannot count text. */
  of(api: ProviderApi, model: string): ((text: string) => Promise<number>) | undefined;
  /** Resolves once no count is running. */
  idle(): Promise<void>;
  /**
   * Ends the counts still running (their answers are billed their upper count). The upstream's close does it itself:
   * its dispatcher's close and destroy can miss a request to an origin whose last connection closed meanwhile.
   */
  stop(): void;
}

/**
 * The counts of an upstream: a text is counted as the one user message of a count request, less the count of the same
 * message holding one token (its fixed part, asked once per model, in parallel with the first text). Both within
 * `timeoutMs`; a failure, a non-2xx or an answer without a count rejects (the meter then bills its upper count).
 */
export function outputCounts(dispatcher: Dispatcher, requests: UpstreamRequests, timeoutMs: number): OutputCounts {
  const overheads = new Map<string, Promise<number>>();
  const running = new Set<Promise<number>>();
  const stopping = new AbortController();

  async function countOnce(api: ProviderApi, model: string, text: string, signal: AbortSignal): Promise<number> {
    const counting = adapterFor(api).countTokens!;
    const answer = await dispatcher.request({
      ...requests.countDestination(api, model),
      method: 'POST',
      headers: requests.headers(undefined, false),
      body: JSON.stringify(counting.textRequest!(model, text)),
      signal,
    });
    if (answer.statusCode < 200 || answer.statusCode >= 300) {
      await answer.body.dump();
      throw new Error(`the count answered HTTP ${answer.statusCode}`);
    }
    const count = counting.readCount!(await answer.body.json());
    if (count === undefined || !Number.isSafeInteger(count) || count < 0) throw new Error('the count answered none');
    return count;
  }

  function overheadOf(api: ProviderApi, model: string, signal: AbortSignal): Promise<number> {
    const key = `${api}\u0000${model}`;
    let overhead = overheads.get(key);
    if (overhead === undefined) {
      overhead = countOnce(api, model, PROBE_TEXT, signal).then((count) => Math.max(0, count - 1));
      // A failed measure is asked again by the next count.
      overhead.catch(() => overheads.delete(key));
      if (overheads.size < MAX_KEPT_OVERHEADS) overheads.set(key, overhead);
    }
    return overhead;
  }

  async function countText(api: ProviderApi, model: string, text: string): Promise<number> {
    const signal = AbortSignal.any([AbortSignal.timeout(timeoutMs), stopping.signal]);
    const [whole, overhead] = await Promise.all([countOnce(api, model, text, signal), overheadOf(api, model, signal)]);
    return Math.max(0, whole - overhead);
  }

  return {
    of(api, model) {
      const counting = adapterFor(api).countTokens;
      if (counting?.textRequest === undefined || counting.readCount === undefined) return undefined;
      return (text) => {
        const count = countText(api, model, text);
        running.add(count);
        const forget = () => running.delete(count);
        count.then(forget, forget);
        return count;
      };
    },
    async idle() {
      while (running.size > 0) await Promise.allSettled([...running]);
    },
    stop: () => stopping.abort(new Error('the upstream is closing')),
  };
}
