// Audio and image calls priced by the one pricer: media tokens, minutes, characters and images, to the nano-USD.
import { describe, expect, it } from '@jest/globals';
import { createPricing } from '../src/index.js';
import { costNanoUsd, maxCostNanoUsd, mediaTokens } from '../src/costs.js';
import type { MediaUsage } from '../src/costs.js';

const pricing = createPricing();
const usage = (inputTokens: number, outputTokens: number, media: MediaUsage) => ({
  inputTokens,
  cachedInputTokens: 0,
  cacheWriteTokens: 0,
  outputTokens,
  reasoningTokens: 0,
  media,
});

describe('media prices', () => {
  it('bills gpt-4o-transcribe audio tokens at $6, text in at $2.50 and out at $10 per 1M (genai-prices)', () => {
    const price = pricing.get('gpt-4o-transcribe');
    expect(price.kind).toBe('transcription');
    // Nano-USD per token: audio 6,000, text in 2,500, text out 10,000.
    expect(costNanoUsd(usage(20, 300, { audioInputTokens: 1000 }), price)).toBe(1000 * 6000 + 20 * 2500 + 300 * 10_000);
  });

  it('bills whisper-1 by the second at $0.006 a minute, and no tokens', () => {
    const price = pricing.get('whisper-1');
    expect(costNanoUsd(usage(0, 0, { audioSeconds: 61 }), price)).toBe(6_100_000);
    expect(costNanoUsd(usage(0, 0, { audioSeconds: 1 }), price)).toBe(100_000);
  });

  it('bills tts-1 at $15 and tts-1-hd at $30 per 1M characters', () => {
    expect(costNanoUsd(usage(0, 0, { characters: 1234 }), pricing.get('tts-1'))).toBe(1234 * 15_000);
    expect(costNanoUsd(usage(0, 0, { characters: 1234 }), pricing.get('tts-1-hd'))).toBe(1234 * 30_000);
  });

  it('bills dall-e-3 per image by quality and size, and an unlisted size at its dearest', () => {
    const price = pricing.get('dall-e-3');
    const images = (media: MediaUsage) => costNanoUsd(usage(0, 0, media), price);
    expect(images({ images: 2, imageQuality: 'standard', imageSize: '1024x1024' })).toBe(80_000_000);
    expect(images({ images: 1, imageQuality: 'hd', imageSize: '1792x1024' })).toBe(120_000_000);
    expect(images({ images: 1, imageQuality: 'ultra', imageSize: '4096x4096' })).toBe(120_000_000);
    // `auto` (OpenAI's default: "the best quality for the given model") at the dearest quality of its size.
    expect(images({ images: 1, imageQuality: 'auto', imageSize: '1024x1024' })).toBe(80_000_000);
    // dall-e-2 has one quality: its prices are by size alone.
    expect(costNanoUsd(usage(0, 0, { images: 3, imageSize: '512x512' }), pricing.get('dall-e-2'))).toBe(54_000_000);
  });

  it('bills gpt-image-1 image tokens at $40 out and $10 in, text in at $5 per 1M (genai-prices)', () => {
    const price = pricing.get('gpt-image-1');
    expect(costNanoUsd(usage(50, 0, { imageOutputTokens: 4160, imageInputTokens: 100 }), price)).toBe(
      50 * 5000 + 4160 * 40_000 + 100 * 10_000,
    );
    // The source prices gpt-image-1's output (its image tokens) as `output_mtok`: $0.167 for a high-quality square.
    expect(costNanoUsd(usage(0, 0, { imageOutputTokens: 4160 }), price)).toBe(166_400_000);
  });

  it('reserves what the request asks for at the same units, never under the bill', () => {
    const price = pricing.get('dall-e-3');
    const media: MediaUsage = { images: 4, imageQuality: 'hd', imageSize: '1024x1792' };
    expect(maxCostNanoUsd(0, 0, price, { media })).toBe(costNanoUsd(usage(0, 0, media), price));
    const speech = pricing.get('tts-1');
    expect(maxCostNanoUsd(0, 0, speech, { media: { characters: 4096 } })).toBe(4096 * 15_000);
  });

  it('counts media tokens for token limits, not seconds, characters or images', () => {
    expect(mediaTokens({ audioInputTokens: 10, imageOutputTokens: 5, transcriptTokens: 2, audioSeconds: 60 })).toBe(17);
    expect(mediaTokens({ characters: 100, images: 2 })).toBe(0);
    expect(mediaTokens(undefined)).toBe(0);
  });

  it('takes media prices from a config row, and refuses a per-image price that is not a map of prices', () => {
    const own = createPricing({
      models: {
        'my-tts': { provider: 'openai', kind: 'speech', inputPerMTok: 0, outputPerMTok: 0, perMCharacters: 2 },
      },
    });
    expect(costNanoUsd(usage(0, 0, { characters: 500 }), own.get('my-tts'))).toBe(1_000_000);
    expect(() =>
      createPricing({
        models: { bad: { provider: 'openai', kind: 'image', inputPerMTok: 0, outputPerMTok: 0, perImage: {} } },
      }),
    ).toThrow(/perImage/);
  });
});
