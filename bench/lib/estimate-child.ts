// Child entry for benchmark 3: times one tokenizer on the inputs it is sent and probes the event loop meanwhile.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { estimationInputs } from './inputs.js';
import { loadTokenizer, type CountTokens } from './tokenizers.js';
import { answerParent } from './child-answers.js';

interface RunMessage {
  type: 'run';
  tokenizer: string;
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

const tokenizers = new Map<string, { count: CountTokens; loadMs: number }>();

async function measure(message: RunMessage): Promise<InputMeasurement> {
  let loaded = tokenizers.get(message.tokenizer);
  if (!loaded) {
    const started = performance.now();
    const count = await loadTokenizer(message.tokenizer);
    await count('warm up the tokenizer: load ranks, compile, JIT.');
    loaded = { count, loadMs: performance.now() - started };
    tokenizers.set(message.tokenizer, loaded);
  }
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

answerParent<RunMessage>(measure);
