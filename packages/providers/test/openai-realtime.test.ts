// What the gateway reads of OpenAI's Realtime events: a response's usage by price class, its output cap, added input.
import { describe, expect, it } from '@jest/globals';
import { realtimeAddedInput, realtimeOutputCap, realtimeUsage } from '../src/openai-realtime/index.js';

describe('realtimeUsage', () => {
  it("reads response.done's usage into text counts and audio and image media, cached parts within each", () => {
    const usage = {
      total_tokens: 700,
      input_tokens: 450,
      output_tokens: 250,
      input_token_details: {
        ...{ text_tokens: 120, audio_tokens: 300, image_tokens: 30, cached_tokens: 120 },
        cached_tokens_details: { text_tokens: 20, audio_tokens: 100, image_tokens: 0 },
      },
      output_token_details: { text_tokens: 50, audio_tokens: 200 },
    };
    expect(realtimeUsage({ id: 'resp_1', usage })).toEqual({
      ...{ inputTokens: 120, cachedInputTokens: 20, cacheWriteTokens: 0, outputTokens: 50, reasoningTokens: 0 },
      media: { audioInputTokens: 300, cachedAudioInputTokens: 100, imageInputTokens: 30, audioOutputTokens: 200 },
    });
  });

  it('counts a usage without its breakdown as audio, the dearer class', () => {
    const read = realtimeUsage({
      usage: { input_tokens: 40, output_tokens: 60, input_token_details: { cached_tokens: 8 } },
    });
    expect(read).toMatchObject({ inputTokens: 0, cachedInputTokens: 0, outputTokens: 0 });
    expect(read?.media).toEqual({
      ...{ audioInputTokens: 40, cachedAudioInputTokens: 8, imageInputTokens: 0, audioOutputTokens: 60 },
    });
  });

  it('is undefined for a response without usage', () => {
    expect(realtimeUsage({ id: 'resp_2', status: 'cancelled' })).toBeUndefined();
    expect(realtimeUsage(undefined)).toBeUndefined();
  });
});

describe('realtimeOutputCap', () => {
  it("takes the response's cap, else the session's, and reads inf or none as the API's 4,096", () => {
    expect(realtimeOutputCap({ max_output_tokens: 200 }, { max_output_tokens: 900 })).toBe(200);
    expect(realtimeOutputCap({}, { max_response_output_tokens: 900 })).toBe(900);
    expect(realtimeOutputCap(undefined, { max_output_tokens: 'inf' })).toBe(4096);
    expect(realtimeOutputCap(undefined, undefined)).toBe(4096);
    expect(realtimeOutputCap({ max_output_tokens: 1e9 }, undefined)).toBe(4096);
  });
});

describe('realtimeAddedInput', () => {
  it('bounds appended audio at one token per 2,400 bytes, and an item one token per byte of its JSON', () => {
    const second = Buffer.alloc(48_000).toString('base64');
    expect(realtimeAddedInput({ type: 'input_audio_buffer.append', audio: second })).toBe(20);
    const item = { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Hi' }] };
    expect(realtimeAddedInput({ type: 'conversation.item.create', item })).toBe(JSON.stringify(item).length);
    expect(realtimeAddedInput({ type: 'response.cancel' })).toBe(0);
  });
});
