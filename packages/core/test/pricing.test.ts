import { describe, expect, it } from '@jest/globals';
import { createPricing, TollgateError, UnknownModelError } from '@tollgate/core';
import { affordableOutputTokens, costNanoUsd, maxCostNanoUsd, priceAtCall } from '@tollgate/core/costs';

const usage = (input: number, output: number, cached = 0, written = 0, reasoning = 0) => ({
  inputTokens: input,
  outputTokens: output,
  cachedInputTokens: cached,
  cacheWriteTokens: written,
  reasoningTokens: reasoning,
});

describe('pricing', () => {
  const pricing = createPricing();

  it('resolves dated ids to their family', () => {
    expect(pricing.get('gpt-4o-2024-08-06').model).toBe('gpt-4o');
    expect(pricing.get('gpt-4o-mini-2024-07-18').model).toBe('gpt-4o-mini');
    expect(pricing.get('claude-sonnet-4-5-20250929').model).toBe('claude-sonnet-4-5');
    // An id the maintained source names is its own family; our shorter id resolves to the same prices.
    expect(pricing.get('claude-3-5-haiku-latest').model).toBe('claude-3-5-haiku-latest');
    expect(pricing.get('claude-3-5-haiku-20241022')).toMatchObject({
      model: 'claude-3-5-haiku',
      provider: 'anthropic',
    });
  });

  it('rejects unknown models unless a default price is set', () => {
    expect(() => pricing.get('my-llm')).toThrow(UnknownModelError);
    const withDefault = createPricing({ defaultPrice: { provider: 'openai', inputPerMTok: 1, outputPerMTok: 2 } });
    expect(withDefault.get('my-llm').outputMicro).toBe(2_000_000);
  });

  it('lets users add and override models in code', () => {
    const custom = createPricing({
      models: {
        'gpt-4o': { provider: 'openai', inputPerMTok: 1, outputPerMTok: 1 },
        mine: { provider: 'vllm', inputPerMTok: 0.2, outputPerMTok: 0.4 },
      },
    });
    expect(custom.get('gpt-4o-2024-11-20').inputMicro).toBe(1_000_000);
    expect(custom.get('mine').provider).toBe('vllm');
  });

  it("counts OpenAI-speaking providers with o200k_base by default, the provider's own tokenizer only where named", () => {
    const pricing = createPricing({
      models: {
        'my-openai': { provider: 'openai', inputPerMTok: 1, outputPerMTok: 1 },
        'my-vllm': { provider: 'openai-compatible', inputPerMTok: 1, outputPerMTok: 1 },
        'my-named': { provider: 'openai', inputPerMTok: 1, outputPerMTok: 1, tokenizer: 'cl100k_base' },
        'my-claude': { provider: 'anthropic', inputPerMTok: 1, outputPerMTok: 1 },
        'my-llama': {
          provider: 'openai',
          inputPerMTok: 1,
          outputPerMTok: 1,
          tokenizer: 'o200k_base',
          ownTokenizer: false,
        },
      },
    });
    const counting = (model: string) => ({
      tokenizer: pricing.get(model).tokenizer,
      own: pricing.get(model).ownTokenizer,
    });
    expect(counting('my-openai')).toEqual({ tokenizer: 'o200k_base', own: false });
    expect(counting('my-vllm')).toEqual({ tokenizer: 'o200k_base', own: false });
    expect(counting('my-named')).toEqual({ tokenizer: 'cl100k_base', own: true });
    expect(counting('my-claude')).toEqual({ tokenizer: 'approximate', own: false });
    expect(counting('my-llama')).toEqual({ tokenizer: 'o200k_base', own: false });
    // The shipped rows: OpenAI's are the provider's own encodings; Claude and Gemini are approximated.
    expect(counting('gpt-4o-mini')).toEqual({ tokenizer: 'o200k_base', own: true });
    expect(counting('claude-haiku-4-5')).toEqual({ tokenizer: 'approximate', own: false });
    expect(counting('gemini-2.5-flash')).toEqual({ tokenizer: 'approximate', own: false });
    expect(() =>
      createPricing({ models: { bad: { provider: 'x', inputPerMTok: 1, outputPerMTok: 1, ownTokenizer: true } } }),
    ).toThrow(/ownTokenizer/);
  });

  it('rejects bad prices at construction', () => {
    expect(() => createPricing({ models: { x: { provider: 'openai', inputPerMTok: -1, outputPerMTok: 1 } } })).toThrow(
      TollgateError,
    );
  });

  it('prices each token class once, rounding up once', () => {
    const price = pricing.get('gpt-4o'); // 2.5 in, 1.25 cached, 10 out
    // 1000 input of which 400 cached; 100 output: 600*2500 + 400*1250 + 100*10000 nano = 1.5e6+0.5e6+1e6
    expect(costNanoUsd(usage(1000, 100, 400), price)).toBe(3_000_000);
    expect(costNanoUsd(usage(1, 0), pricing.get('gpt-5-nano'))).toBe(50);
    // $0.005 per 1M cached tokens: one cached token is 5 nano-USD
    expect(costNanoUsd(usage(1, 0, 1), pricing.get('gpt-5-nano'))).toBe(5);
    // $0.075 per 1M: one cached gpt-4o-mini token is 75 nano; 1 uncached input token of gpt-4.1-nano 100
    expect(costNanoUsd(usage(3, 1, 1), pricing.get('gpt-4o-mini'))).toBe(2 * 150 + 75 + 600);
    const claude = pricing.get('claude-sonnet-4-5'); // 3 in, 0.3 read, 3.75 write, 15 out
    expect(costNanoUsd(usage(1000 + 200 + 300, 50, 200, 300, 0), claude)).toBe(
      1000 * 3000 + 200 * 300 + 300 * 3750 + 50 * 15000,
    );
  });

  it('prices 1-hour cache writes at their own rate (Anthropic: 2x input), 5-minute ones at theirs', () => {
    const claude = pricing.get('claude-sonnet-4-5'); // 3 in, 3.75 write (5 minutes), 6 write (1 hour)
    expect(claude.cacheWrite1hMicro).toBe(6_000_000);
    // 1000 input: 600 plain, 400 written to the cache, 300 of those for an hour.
    const written = {
      inputTokens: 1000,
      cachedInputTokens: 0,
      cacheWriteTokens: 400,
      cacheWrite1hTokens: 300,
      outputTokens: 0,
      reasoningTokens: 0,
    };
    expect(costNanoUsd(written, claude)).toBe(600 * 3000 + 100 * 3750 + 300 * 6000);
    // Before: all 400 at the 5-minute price.
    expect(costNanoUsd(written, claude)).toBeGreaterThan(600 * 3000 + 400 * 3750);
    // The estimate's upper bound covers the dearest input class.
    expect(maxCostNanoUsd(1000, 0, claude)).toBe(1000 * 6000);
    // Without a 1-hour price, a 1-hour write costs the cache write price.
    const own = createPricing({
      models: { m: { provider: 'x', inputPerMTok: 1, cacheWritePerMTok: 2, outputPerMTok: 1 } },
    }).get('m');
    expect(own.cacheWrite1hMicro).toBe(2_000_000);
  });

  it('computes the output a budget affords', () => {
    const price = pricing.get('gpt-4o');
    const budget = maxCostNanoUsd(100, 0, price) + 10_000 * 50; // 50 output tokens
    expect(affordableOutputTokens(budget, 100, price)).toBe(50);
    expect(affordableOutputTokens(10, 100, price)).toBe(0);
  });
});

describe('speeds and inference regions billed apart', () => {
  const pricing = createPricing({
    models: {
      'my-claude': {
        provider: 'anthropic',
        inputPerMTok: 2,
        cachedInputPerMTok: 0.2,
        cacheWritePerMTok: 2.5,
        cacheWrite1hPerMTok: 4,
        outputPerMTok: 10,
        longContext: { aboveInputTokens: 1000, inputPerMTok: 4, outputPerMTok: 15 },
        speeds: { fast: { inputPerMTok: 12, outputPerMTok: 60 } },
        inferenceGeos: { us: 1.1 },
      },
    },
  });
  const price = pricing.get('my-claude');

  it('prices the cache classes a speed does not name by the caching multipliers over its input', () => {
    expect(price.speeds?.fast).toMatchObject({
      inputMicro: 12_000_000,
      cachedInputMicro: 1_200_000,
      cacheWriteMicro: 15_000_000,
      cacheWrite1hMicro: 24_000_000,
      outputMicro: 60_000_000,
    });
  });

  it('bills a fast call at its speed across the whole context window, and a region by its multiplier', () => {
    const long = { ...usage(2000, 100, 500, 500), cacheWrite1hTokens: 500 };
    // Fast prices past the long-context threshold: 1,000 uncached, 500 read, 500 written for an hour, 100 out.
    expect(costNanoUsd({ ...long, speed: 'fast' }, price)).toBe(12_000_000 + 600_000 + 12_000_000 + 6_000_000);
    expect(costNanoUsd(long, price)).toBe(4_000_000 + 100_000 + 2_000_000 + 1_500_000);
    expect(costNanoUsd({ ...usage(100, 100), inferenceGeo: 'us' }, price)).toBe(220_000 + 1_100_000);
    expect(costNanoUsd({ ...usage(100, 100), speed: 'slow', inferenceGeo: 'eu' }, price)).toBe(200_000 + 1_000_000);
  });

  it('keeps the shipped fast prices and US multiplier of a row a LiteLLM source reprices, as LiteLLM has none', () => {
    const sourced = createPricing();
    const perToken = (usd: number) => usd / 1_000_000;
    sourced.loadSource(
      JSON.stringify({
        'claude-opus-5': {
          litellm_provider: 'anthropic',
          mode: 'chat',
          input_cost_per_token: perToken(6),
          output_cost_per_token: perToken(30),
        },
      }),
    );
    const opus = sourced.get('claude-opus-5');
    expect(opus).toMatchObject({ inputMicro: 6_000_000, inferenceGeos: { us: 1.1 } });
    expect(opus.speeds?.fast).toMatchObject({ inputMicro: 10_000_000, outputMicro: 50_000_000 });
  });

  it('bounds a call at the speed and region it asks for, once: a price moved there moves no further', () => {
    const fastUs = { speed: 'fast', inferenceGeo: 'us' };
    // 100 input at the fast 1-hour cache write ($24) and 100 output at $60, times 1.1.
    expect(maxCostNanoUsd(100, 100, price, fastUs)).toBe(2_640_000 + 6_600_000);
    const moved = priceAtCall(price, 100, fastUs);
    expect(maxCostNanoUsd(100, 100, moved, fastUs)).toBe(maxCostNanoUsd(100, 100, price, fastUs));
    expect(priceAtCall(moved, 100, fastUs)).toEqual(moved);
    // What 9,240,000 buys after the input: the 100 output tokens, not a token more.
    expect(affordableOutputTokens(9_240_000, 100, price, fastUs)).toBe(100);
  });

  it('refuses a region multiplier under 1 or past 10', () => {
    for (const factor of [0.9, 11, Number.NaN])
      expect(() =>
        createPricing({
          models: { x: { provider: 'anthropic', inputPerMTok: 1, outputPerMTok: 1, inferenceGeos: { us: factor } } },
        }),
      ).toThrow(TollgateError);
  });
});
