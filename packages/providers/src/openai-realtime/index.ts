// OpenAI's Realtime API (WebSocket `/v1/realtime`): what the gateway reads of its events to meter a session's
// responses (docs/realtime.md): the output cap of a response, the input a client adds, and `response.done`'s usage.
import type { TokenUsage } from '@tollgate/core';
import type { MediaUsage } from '@tollgate/core/costs';
import { isObject, tokenCount } from '../json.js';

/** The most output tokens one Realtime response may have ("inf" means this): OpenAI's limit per response. */
const REALTIME_MAX_OUTPUT_TOKENS = 4096;
/**
 * Bytes of appended audio per input token reserved: 24 kHz 16-bit mono PCM is 48,000 bytes a second, which OpenAI
 * bills at 10 tokens a second (one per 100 ms); one per 50 ms is reserved, twice that, for G.711's 8 kHz and slack.
 */
const AUDIO_BYTES_PER_TOKEN = 2400;

/**
 * The output cap a response runs with: its own `max_output_tokens` (`max_response_output_tokens` in the beta), else
 * the session's, else the API's most; "inf" is the API's most.
 */
export function realtimeOutputCap(response: unknown, session: unknown): number {
  for (const holder of [response, session]) {
    if (!isObject(holder)) continue;
    const cap = holder.max_output_tokens ?? holder.max_response_output_tokens;
    if (typeof cap === 'number' && Number.isSafeInteger(cap) && cap > 0)
      return Math.min(cap, REALTIME_MAX_OUTPUT_TOKENS);
    if (cap === 'inf') return REALTIME_MAX_OUTPUT_TOKENS;
  }
  return REALTIME_MAX_OUTPUT_TOKENS;
}

/**
 * The input tokens a client event adds to the session at most, before any response reads them: appended audio by its
 * length, an item's text one token per byte (no tokenizer makes more of it), its audio by its length.
 */
export function realtimeAddedInput(event: Record<string, unknown>): number {
  if (event.type === 'input_audio_buffer.append' && typeof event.audio === 'string')
    return Math.ceil((event.audio.length * 3) / 4 / AUDIO_BYTES_PER_TOKEN);
  if (event.type === 'conversation.item.create' || event.type === 'session.update')
    return Buffer.byteLength(JSON.stringify(event.item ?? event.session ?? ''));
  return 0;
}

/**
 * The usage of a `response.done` event's response, by price class: text tokens as the usage's own counts (cached
 * text within `cachedInputTokens`), audio and image tokens as media (cached audio within them); undefined without one.
 */
export function realtimeUsage(response: unknown): TokenUsage | undefined {
  if (!isObject(response) || !isObject(response.usage)) return undefined;
  const usage = response.usage;
  const input = isObject(usage.input_token_details) ? usage.input_token_details : {};
  const cached = isObject(input.cached_tokens_details) ? input.cached_tokens_details : {};
  const output = isObject(usage.output_token_details) ? usage.output_token_details : {};
  const detailed = input.text_tokens !== undefined || input.audio_tokens !== undefined;
  const outputDetailed = output.text_tokens !== undefined || output.audio_tokens !== undefined;
  // Without a breakdown, every token is counted as audio: the dearer class, never an under-charge.
  const media: MediaUsage = {
    audioInputTokens: tokenCount(detailed ? input.audio_tokens : usage.input_tokens),
    cachedAudioInputTokens: tokenCount(detailed ? cached.audio_tokens : input.cached_tokens),
    imageInputTokens: tokenCount(input.image_tokens),
    audioOutputTokens: tokenCount(outputDetailed ? output.audio_tokens : usage.output_tokens),
  };
  return {
    inputTokens: detailed ? tokenCount(input.text_tokens) : 0,
    cachedInputTokens: detailed ? tokenCount(cached.text_tokens) : 0,
    cacheWriteTokens: 0,
    outputTokens: outputDetailed ? tokenCount(output.text_tokens) : 0,
    reasoningTokens: 0,
    media,
  };
}
