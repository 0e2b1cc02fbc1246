// The model catalogue: the one place that says, per model family, who serves it, what it costs and how it counts.
import type { ModelPrice } from './pricing.js';

/**
 * Shipped rows (USD per 1M tokens; standard tier, not batch, no long-context surcharge), with each
 * model's documented maximum output, context window and tokenizer. Sources: the pricing and model
 * pages of OpenAI, Anthropic and Google (Anthropic cache writes: 5-minute 1.25x input, 1-hour 2x input;
 * Gemini at the up-to-200k-token prompt price). Checked as of 2025-11; re-check before relying on
 * them, and add or override rows in code with `createPricing({ models })` or the proxy's `models`.
 * Dated ids resolve to their family (`gpt-4o-2024-08-06` -> `gpt-4o`).
 */
export const DEFAULT_PRICES_AS_OF = '2025-11';

const O200K = 'o200k_base' as const;
const CL100K = 'cl100k_base' as const;

export const DEFAULT_PRICES: Readonly<Record<string, ModelPrice>> = Object.freeze({
  // OpenAI
  'gpt-5.1': { provider: 'openai', inputPerMTok: 1.25, cachedInputPerMTok: 0.125, outputPerMTok: 10, maxOutputTokens: 128_000, contextWindow: 400_000, tokenizer: O200K },
  'gpt-5': { provider: 'openai', inputPerMTok: 1.25, cachedInputPerMTok: 0.125, outputPerMTok: 10, maxOutputTokens: 128_000, contextWindow: 400_000, tokenizer: O200K },
  'gpt-5-mini': { provider: 'openai', inputPerMTok: 0.25, cachedInputPerMTok: 0.025, outputPerMTok: 2, maxOutputTokens: 128_000, contextWindow: 400_000, tokenizer: O200K },
  'gpt-5-nano': { provider: 'openai', inputPerMTok: 0.05, cachedInputPerMTok: 0.005, outputPerMTok: 0.4, maxOutputTokens: 128_000, contextWindow: 400_000, tokenizer: O200K },
  'gpt-4.1': { provider: 'openai', inputPerMTok: 2, cachedInputPerMTok: 0.5, outputPerMTok: 8, maxOutputTokens: 32_768, contextWindow: 1_047_576, tokenizer: O200K },
  'gpt-4.1-mini': { provider: 'openai', inputPerMTok: 0.4, cachedInputPerMTok: 0.1, outputPerMTok: 1.6, maxOutputTokens: 32_768, contextWindow: 1_047_576, tokenizer: O200K },
  'gpt-4.1-nano': { provider: 'openai', inputPerMTok: 0.1, cachedInputPerMTok: 0.025, outputPerMTok: 0.4, maxOutputTokens: 32_768, contextWindow: 1_047_576, tokenizer: O200K },
  'gpt-4o': { provider: 'openai', inputPerMTok: 2.5, cachedInputPerMTok: 1.25, outputPerMTok: 10, maxOutputTokens: 16_384, contextWindow: 128_000, tokenizer: O200K },
  'gpt-4o-mini': { provider: 'openai', inputPerMTok: 0.15, cachedInputPerMTok: 0.075, outputPerMTok: 0.6, maxOutputTokens: 16_384, contextWindow: 128_000, tokenizer: O200K },
  'chatgpt-4o-latest': { provider: 'openai', inputPerMTok: 5, outputPerMTok: 15, maxOutputTokens: 16_384, contextWindow: 128_000, tokenizer: O200K },
  'gpt-4': { provider: 'openai', inputPerMTok: 30, outputPerMTok: 60, maxOutputTokens: 8_192, contextWindow: 8_192, tokenizer: CL100K },
  'gpt-4-turbo': { provider: 'openai', inputPerMTok: 10, outputPerMTok: 30, maxOutputTokens: 4_096, contextWindow: 128_000, tokenizer: CL100K },
  'gpt-3.5-turbo': { provider: 'openai', inputPerMTok: 0.5, outputPerMTok: 1.5, maxOutputTokens: 4_096, contextWindow: 16_385, tokenizer: CL100K },
  o1: { provider: 'openai', inputPerMTok: 15, cachedInputPerMTok: 7.5, outputPerMTok: 60, maxOutputTokens: 100_000, contextWindow: 200_000, tokenizer: O200K },
  'o1-mini': { provider: 'openai', inputPerMTok: 1.1, cachedInputPerMTok: 0.55, outputPerMTok: 4.4, maxOutputTokens: 65_536, contextWindow: 128_000, tokenizer: O200K },
  o3: { provider: 'openai', inputPerMTok: 2, cachedInputPerMTok: 0.5, outputPerMTok: 8, maxOutputTokens: 100_000, contextWindow: 200_000, tokenizer: O200K },
  'o3-mini': { provider: 'openai', inputPerMTok: 1.1, cachedInputPerMTok: 0.55, outputPerMTok: 4.4, maxOutputTokens: 100_000, contextWindow: 200_000, tokenizer: O200K },
  'o4-mini': { provider: 'openai', inputPerMTok: 1.1, cachedInputPerMTok: 0.275, outputPerMTok: 4.4, maxOutputTokens: 100_000, contextWindow: 200_000, tokenizer: O200K },
  // Anthropic (tokenizer not public: approximated)
  'claude-opus-4-5': { provider: 'anthropic', inputPerMTok: 5, cachedInputPerMTok: 0.5, cacheWritePerMTok: 6.25, cacheWrite1hPerMTok: 10, outputPerMTok: 25, maxOutputTokens: 64_000, contextWindow: 200_000 },
  'claude-opus-4-1': { provider: 'anthropic', inputPerMTok: 15, cachedInputPerMTok: 1.5, cacheWritePerMTok: 18.75, cacheWrite1hPerMTok: 30, outputPerMTok: 75, maxOutputTokens: 32_000, contextWindow: 200_000 },
  'claude-opus-4': { provider: 'anthropic', inputPerMTok: 15, cachedInputPerMTok: 1.5, cacheWritePerMTok: 18.75, cacheWrite1hPerMTok: 30, outputPerMTok: 75, maxOutputTokens: 32_000, contextWindow: 200_000 },
  'claude-sonnet-4-5': { provider: 'anthropic', inputPerMTok: 3, cachedInputPerMTok: 0.3, cacheWritePerMTok: 3.75, cacheWrite1hPerMTok: 6, outputPerMTok: 15, maxOutputTokens: 64_000, contextWindow: 200_000 },
  'claude-sonnet-4': { provider: 'anthropic', inputPerMTok: 3, cachedInputPerMTok: 0.3, cacheWritePerMTok: 3.75, cacheWrite1hPerMTok: 6, outputPerMTok: 15, maxOutputTokens: 64_000, contextWindow: 200_000 },
  'claude-3-7-sonnet': { provider: 'anthropic', inputPerMTok: 3, cachedInputPerMTok: 0.3, cacheWritePerMTok: 3.75, cacheWrite1hPerMTok: 6, outputPerMTok: 15, maxOutputTokens: 64_000, contextWindow: 200_000 },
  'claude-haiku-4-5': { provider: 'anthropic', inputPerMTok: 1, cachedInputPerMTok: 0.1, cacheWritePerMTok: 1.25, cacheWrite1hPerMTok: 2, outputPerMTok: 5, maxOutputTokens: 64_000, contextWindow: 200_000 },
  'claude-3-5-haiku': { provider: 'anthropic', inputPerMTok: 0.8, cachedInputPerMTok: 0.08, cacheWritePerMTok: 1, cacheWrite1hPerMTok: 1.6, outputPerMTok: 4, maxOutputTokens: 8_192, contextWindow: 200_000 },
  'claude-3-haiku': { provider: 'anthropic', inputPerMTok: 0.25, cachedInputPerMTok: 0.03, cacheWritePerMTok: 0.3, cacheWrite1hPerMTok: 0.5, outputPerMTok: 1.25, maxOutputTokens: 4_096, contextWindow: 200_000 },
  // Google Gemini (native generateContent API; tokenizer not public: approximated)
  'gemini-2.5-pro': { provider: 'google', inputPerMTok: 1.25, cachedInputPerMTok: 0.125, outputPerMTok: 10, maxOutputTokens: 65_536, contextWindow: 1_048_576 },
  'gemini-2.5-flash': { provider: 'google', inputPerMTok: 0.3, cachedInputPerMTok: 0.03, outputPerMTok: 2.5, maxOutputTokens: 65_536, contextWindow: 1_048_576 },
  'gemini-2.5-flash-lite': { provider: 'google', inputPerMTok: 0.1, cachedInputPerMTok: 0.01, outputPerMTok: 0.4, maxOutputTokens: 65_536, contextWindow: 1_048_576 },
  'gemini-2.0-flash': { provider: 'google', inputPerMTok: 0.1, cachedInputPerMTok: 0.025, outputPerMTok: 0.4, maxOutputTokens: 8_192, contextWindow: 1_048_576 },
});
