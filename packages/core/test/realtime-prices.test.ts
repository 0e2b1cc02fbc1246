// Realtime models priced by the one pricer: text, audio, cached text and cached audio apart, to the nano-USD.
import { describe, expect, it } from '@jest/globals';
import { createPricing } from '../src/index.js';
import { costNanoUsd, maxCostNanoUsd } from '../src/costs.js';

const pricing = createPricing();

/** 100 text tokens in (30 cached), 1,000 audio in (400 cached), 50 text and 500 audio out. */
const session = {
  inputTokens: 100,
  cachedInputTokens: 30,
  cacheWriteTokens: 0,
  outputTokens: 50,
  reasoningTokens: 0,
  media: { audioInputTokens: 1000, cachedAudioInputTokens: 400, audioOutputTokens: 500 },
};

describe('Realtime prices (@pydantic/genai-prices 0.1.8)', () => {
  it.each([
    // model, nano-USD per token: text in, cached text, audio in, cached audio, text out, audio out
    ['gpt-realtime', [4000, 400, 32_000, 400, 16_000, 64_000]],
    ['gpt-realtime-mini', [600, 60, 10_000, 300, 2400, 20_000]],
    ['gpt-4o-realtime-preview', [5000, 2500, 40_000, 2500, 20_000, 80_000]],
    ['gpt-4o-mini-realtime-preview', [600, 300, 10_000, 300, 2400, 20_000]],
  ] as const)('bills %s per class', (model, [text, cachedText, audio, cachedAudio, textOut, audioOut]) => {
    const price = pricing.get(model);
    expect(price.kind).toBe('realtime');
    expect(costNanoUsd(session, price)).toBe(
      70 * text + 30 * cachedText + 600 * audio + 400 * cachedAudio + 50 * textOut + 500 * audioOut,
    );
  });

  it('bounds a response by its audio: every input token and the whole cap at the audio prices', () => {
    const price = pricing.get('gpt-realtime');
    const media = { audioInputTokens: 2000, audioOutputTokens: 4096 };
    expect(maxCostNanoUsd(0, 0, price, { media })).toBe(2000 * 32_000 + 4096 * 64_000);
  });

  it('prices cached audio at the cached input price where a row names no cached audio price', () => {
    const custom = createPricing({
      models: {
        'my-voice': {
          provider: 'openai',
          inputPerMTok: 1,
          cachedInputPerMTok: 0.5,
          outputPerMTok: 2,
          audioInputPerMTok: 8,
        },
      },
    }).get('my-voice');
    const media = { audioInputTokens: 10, cachedAudioInputTokens: 4 };
    expect(costNanoUsd({ ...session, inputTokens: 0, cachedInputTokens: 0, outputTokens: 0, media }, custom)).toBe(
      6 * 8000 + 4 * 500,
    );
  });
});
