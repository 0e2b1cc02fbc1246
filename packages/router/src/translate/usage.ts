// Usage between API shapes, read through the provider adapters so each API's rules stay in one place.
import type { TokenUsage } from '@tollgate/core';
import { anthropicMessages, openAiChat } from '@tollgate/providers';
import { isObject } from './json.js';
import type { Json } from './json.js';

const NO_USAGE: TokenUsage = {
  inputTokens: 0,
  cachedInputTokens: 0,
  cacheWriteTokens: 0,
  outputTokens: 0,
  reasoningTokens: 0,
};

/** Our usage from an Anthropic `usage` object (its input excludes cache reads and writes; ours includes them). */
export function fromAnthropicUsage(usage: unknown): TokenUsage {
  return { ...NO_USAGE, ...anthropicMessages.readUsage({ usage }) };
}

/** Our usage from an OpenAI chat `usage` object. */
export function fromChatUsage(usage: unknown): TokenUsage {
  return { ...NO_USAGE, ...openAiChat.readUsage({ usage }) };
}

/**
 * OpenAI chat usage: prompt tokens include cache reads and writes (as OpenAI's do), cache reads
 * also in `cached_tokens`. OpenAI has no field for cache writes: they are ordinary prompt tokens there.
 */
export function toChatUsage(usage: TokenUsage): Json {
  return {
    prompt_tokens: usage.inputTokens,
    completion_tokens: usage.outputTokens,
    total_tokens: usage.inputTokens + usage.outputTokens,
    prompt_tokens_details: { cached_tokens: usage.cachedInputTokens, audio_tokens: 0 },
    completion_tokens_details: {
      reasoning_tokens: usage.reasoningTokens,
      audio_tokens: 0,
      accepted_prediction_tokens: 0,
      rejected_prediction_tokens: 0,
    },
  };
}

/** Anthropic usage: input tokens without the cached ones, which go to `cache_read_input_tokens`. */
export function toAnthropicUsage(usage: TokenUsage): Json {
  const cacheRead = Math.min(usage.cachedInputTokens, usage.inputTokens);
  const cacheWrite = Math.min(usage.cacheWriteTokens, usage.inputTokens - cacheRead);
  return {
    input_tokens: usage.inputTokens - cacheRead - cacheWrite,
    cache_creation_input_tokens: cacheWrite,
    cache_read_input_tokens: cacheRead,
    output_tokens: usage.outputTokens,
  };
}

/** Copies the usage fields that are set: Anthropic's stream counts are running totals, replaced (never added), and a null means "unchanged". */
export function assignUsage(into: Json, usage: unknown): void {
  if (!isObject(usage)) return;
  for (const [field, value] of Object.entries(usage)) if (value !== null && value !== undefined) into[field] = value;
}
