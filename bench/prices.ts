// What loading a price source costs the event loop: a LiteLLM-shaped file of 2,500 rows (its real size is about
// 2,000 rows, 1.5 MB), read into a pricing table, timed over rounds. `pnpm exec tsx bench/prices.ts`
import { performance } from 'node:perf_hooks';
import { createPricing } from '@tollgate/core';

const ROWS = 2_500;
const ROUNDS = 20;

function litellmFile(scale: number): string {
  const rows: Record<string, unknown> = {};
  const providers = ['openai', 'anthropic', 'gemini', 'mistral', 'bedrock', 'vertex_ai-language-models'];
  for (let i = 0; i < ROWS; i++) {
    rows[`model-${i}`] = {
      litellm_provider: providers[i % providers.length],
      mode: i % 10 === 0 ? 'embedding' : 'chat',
      max_input_tokens: 128_000,
      max_output_tokens: 16_384,
      input_cost_per_token: (1 + (i % 50)) * 1e-7 * scale,
      output_cost_per_token: (4 + (i % 50)) * 1e-7 * scale,
      cache_read_input_token_cost: 1e-8 * scale,
      input_cost_per_token_flex: 5e-8 * scale,
      output_cost_per_token_flex: 2e-7 * scale,
      supports_function_calling: true,
      supports_vision: i % 2 === 0,
      source: 'https://example.org/pricing',
    };
  }
  return JSON.stringify(rows, null, 4);
}

const texts = [litellmFile(1), litellmFile(2)];
const pricing = createPricing();
const times: number[] = [];
for (let round = 0; round < ROUNDS; round++) {
  const started = performance.now();
  pricing.loadSource(texts[round % 2]!);
  times.push(performance.now() - started);
}
times.sort((a, b) => a - b);
const median = times[Math.floor(times.length / 2)]!;
process.stdout.write(
  `price source: ${ROWS} rows, ${(texts[0]!.length / 1e6).toFixed(1)} MB; load (parse, validate, swap, diff) ` +
    `median ${median.toFixed(1)} ms, max ${times[times.length - 1]!.toFixed(1)} ms over ${ROUNDS} rounds\n`,
);
