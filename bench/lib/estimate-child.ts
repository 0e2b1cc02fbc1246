// Child entry for benchmark 3: times tollgate's estimator on the input it is sent, probing the event loop meanwhile, or
// estimates every turn of a few chats as the meter does, with and without the count cache.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createPricing } from '@tollgate/core';
import { estimateRequestAsync, estimateRequestAtOnce, preloadTokenizers, TokenCountCache } from '@tollgate/providers';
import type { EstimateRequestInput, RequestEstimate } from '@tollgate/providers';
import { estimationInputs, prosePrompt } from './inputs.js';
import { answerParent } from './child-answers.js';

interface RunMessage {
  type: 'run';
  input: number;
  quick: boolean;
}

export interface InputMeasurement {
  /** ms per timed run. */
  times: number[];
  tokens: number;
  /** False when any timed run was bounded or approximated instead of counted exactly. */
  exact: boolean;
  /** Longest event-loop stall seen during any timed run, ms. */
  maxStallMs: number;
  loadMs: number;
}

/**
 * The longest time the loop could not turn: gaps between 1 ms interval ticks, and the loop-delay
 * histogram's max. A synchronous count blocks for its whole duration, and this sees exactly that.
 */
function startStallProbe(): () => number {
  const histogram = monitorEventLoopDelay({ resolution: 1 });
  histogram.enable();
  let last = performance.now();
  let maxGap = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
  }, 1);
  return () => {
    clearInterval(timer);
    maxGap = Math.max(maxGap, performance.now() - last);
    histogram.disable();
    return Math.max(maxGap, histogram.max / 1e6);
  };
}

type CountTokens = (text: string) => Promise<{ tokens: number; exact: boolean }>;
let loaded: { count: CountTokens; loadMs: number } | undefined;

/** What meter() runs before the call: estimateInputTokensAsync on a chat request holding the text (its defaults). */
async function loadEstimator(): Promise<{ count: CountTokens; loadMs: number }> {
  const started = performance.now();
  const { estimateInputTokensAsync } = await import('@tollgate/providers');
  // meter() starts this at factory time; a request before it finishes is bounded by bytes instead.
  await preloadTokenizers();
  const count: CountTokens = async (text) => {
    const request = { model: 'gpt-4o', messages: [{ role: 'user', content: text }] };
    const estimate = await estimateInputTokensAsync('openai.chat', request, 'gpt-4o');
    return { tokens: estimate.tokens, exact: estimate.exact };
  };
  await count('warm up the tokenizer: load ranks, compile, JIT.');
  return { count, loadMs: performance.now() - started };
}

async function measure(message: RunMessage): Promise<InputMeasurement> {
  loaded ??= await loadEstimator();
  const input = estimationInputs(message.quick)[message.input]!;
  // One untimed run on a text of the same kind: the first call on a new shape of input pays for JIT.
  await loaded.count(input.make(1000));
  const times: number[] = [];
  let tokens = 0;
  let exact = true;
  let maxStallMs = 0;
  for (let run = 0; run < input.runs; run++) {
    const text = input.make(run);
    // Let the loop settle so the probe does not count our own input building.
    await new Promise((resolve) => setTimeout(resolve, 5));
    const stopProbe = startStallProbe();
    const started = performance.now();
    const counted = await loaded.count(text);
    tokens = counted.tokens;
    exact &&= counted.exact;
    times.push(performance.now() - started);
    maxStallMs = Math.max(maxStallMs, stopProbe());
  }
  return { times, tokens, exact, maxStallMs, loadMs: loaded.loadMs };
}

export interface ConversationRequest {
  conversations: number;
  turns: number;
  systemChars: number;
  userChars: number;
  replyChars: number;
}

export interface ConversationMeasurement {
  /** Per conversation: CPU ms of every turn's estimate together, without and with the cache. */
  uncachedMs: number[];
  cachedMs: number[];
  /** CPU ms of the last turn's estimate, per conversation. */
  lastTurnUncachedMs: number[];
  lastTurnCachedMs: number[];
  /** Input tokens of the last turn (the same with and without the cache, or the child fails). */
  lastTurnTokens: number;
  /** Estimates that had to be counted in slices (too much new text to count at once). */
  slicedUncached: number;
  slicedCached: number;
}

type Message = { role: string; content: string };

const pricing = createPricing();

/** As the meter runs it: at once when the new text is small, else in slices. */
async function estimate(
  messages: Message[],
  countCache: TokenCountCache | undefined,
): Promise<{ estimate: RequestEstimate; sliced: boolean }> {
  const input: EstimateRequestInput = {
    api: 'openai.chat',
    body: { model: 'gpt-4o', messages },
    pricing,
    countCache,
    countScope: 'bench-tenant',
  };
  const atOnce = estimateRequestAtOnce(input);
  if (atOnce) return { estimate: atOnce, sliced: false };
  return { estimate: await estimateRequestAsync(input), sliced: true };
}

function cpuMs(started: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(started);
  return (used.user + used.system) / 1000;
}

async function measureConversations(request: ConversationRequest): Promise<ConversationMeasurement> {
  await preloadTokenizers();
  // The app's system prompt is the same in every conversation; the turns are each conversation's own.
  const system: Message = { role: 'system', content: prosePrompt(request.systemChars, 11) };
  // One cache for the whole run, as a meter keeps one for all its requests.
  const cache = new TokenCountCache();
  const result: ConversationMeasurement = {
    uncachedMs: [],
    cachedMs: [],
    lastTurnUncachedMs: [],
    lastTurnCachedMs: [],
    lastTurnTokens: 0,
    slicedUncached: 0,
    slicedCached: 0,
  };
  for (let conversation = 0; conversation < request.conversations; conversation++) {
    const history: Message[] = [system];
    const totals = { uncached: 0, cached: 0 };
    for (let turn = 0; turn < request.turns; turn++) {
      const seed = 1_000 + conversation * 100 + turn;
      history.push({ role: 'user', content: prosePrompt(request.userChars, seed) });
      const messages = history.slice();
      // In turn which goes first: the second finds the CPU's caches warmed by the first.
      const timed = async (countCache: TokenCountCache | undefined) => {
        const started = process.cpuUsage();
        const counted = await estimate(messages, countCache);
        return { ...counted, ms: cpuMs(started) };
      };
      const first = await timed(turn % 2 === 0 ? undefined : cache);
      const second = await timed(turn % 2 === 0 ? cache : undefined);
      const [plain, kept] = turn % 2 === 0 ? [first, second] : [second, first];
      const uncachedMs = plain.ms;
      const cachedMs = kept.ms;
      if (plain.estimate.inputTokens !== kept.estimate.inputTokens) {
        throw new Error(
          `turn ${turn}: ${kept.estimate.inputTokens} tokens with the cache, ${plain.estimate.inputTokens} without`,
        );
      }
      totals.uncached += uncachedMs;
      totals.cached += cachedMs;
      if (plain.sliced) result.slicedUncached++;
      if (kept.sliced) result.slicedCached++;
      if (turn === request.turns - 1) {
        result.lastTurnUncachedMs.push(uncachedMs);
        result.lastTurnCachedMs.push(cachedMs);
        result.lastTurnTokens = plain.estimate.inputTokens;
      }
      // The model's answer goes into the history the next turn sends.
      history.push({ role: 'assistant', content: prosePrompt(request.replyChars, seed + 50) });
    }
    result.uncachedMs.push(totals.uncached);
    result.cachedMs.push(totals.cached);
  }
  return result;
}

answerParent<RunMessage | (ConversationRequest & { type: 'conversations' })>((message) =>
  message.type === 'run' ? measure(message) : measureConversations(message),
);
