// A price source (LiteLLM's format) loaded into the one pricing table: layers, validation, tiers, pinned requests.
import { describe, expect, it } from '@jest/globals';
import { createPricing, TollgateError } from '@tollgate/core';
import type { TollgateContext } from '@tollgate/core';
import { costNanoUsd } from '@tollgate/core/costs';

const perToken = (usdPerMTok: number) => usdPerMTok / 1_000_000;

function file(rows: Record<string, Record<string, unknown>>): string {
  return JSON.stringify(rows);
}

const LITELLM = file({
  sample_spec: { litellm_provider: 'openai', input_cost_per_token: 0 },
  'gpt-4o': {
    litellm_provider: 'openai',
    mode: 'chat',
    input_cost_per_token: perToken(2.5),
    output_cost_per_token: perToken(10),
    cache_read_input_token_cost: perToken(1.25),
    input_cost_per_token_flex: perToken(1.25),
    output_cost_per_token_flex: perToken(5),
    input_cost_per_token_priority: perToken(4.25),
    output_cost_per_token_priority: perToken(17),
    max_input_tokens: 128_000,
    max_output_tokens: 16_384,
  },
  'brand-new-model': {
    litellm_provider: 'openai',
    mode: 'chat',
    input_cost_per_token: perToken(0.7),
    output_cost_per_token: perToken(2.8),
    max_input_tokens: 200_000,
  },
  'gemini/gemini-9-pro': {
    litellm_provider: 'gemini',
    input_cost_per_token: perToken(2),
    output_cost_per_token: perToken(12),
  },
  'bedrock/anthropic.claude-x': { litellm_provider: 'bedrock', input_cost_per_token: perToken(1) },
  'dall-e-9': { litellm_provider: 'openai', mode: 'image_generation', input_cost_per_token: perToken(1) },
});

/** The context fields the pricing reads of a request: the call's asked tier. */
/** A request's context as pricing reads it: the tier its call asked for, and its per-request variables. */
const request = (serviceTier?: string): TollgateContext => {
  const variables = new Map<string, unknown>();
  return {
    call: { serviceTier },
    get: (key: string) => variables.get(key),
    set: (key: string, value: unknown) => void variables.set(key, value),
  } as unknown as TollgateContext;
};

describe('a price source', () => {
  it('layers shipped < source < models, and keeps the shipped row’s limits and tokenizer', () => {
    const pricing = createPricing({
      models: { 'brand-new-model': { provider: 'openai', inputPerMTok: 9, outputPerMTok: 9 } },
    });
    const shipped = pricing.get('gpt-4o');
    expect(pricing.version).toMatch(/^[0-9a-f]{16}$/);
    const update = pricing.loadSource(LITELLM);
    expect(update.version).toMatch(/^[0-9a-f]{16}$/);
    expect(pricing.version).toBe(update.version);
    const gpt = pricing.get('gpt-4o');
    expect(gpt.inputMicro).toBe(2_500_000);
    expect(gpt.tokenizer).toBe(shipped.tokenizer);
    expect(gpt.ownTokenizer).toBe(shipped.ownTokenizer);
    expect(gpt.maxOutputTokens).toBe(shipped.maxOutputTokens);
    // The config's models always win.
    expect(pricing.get('brand-new-model').inputMicro).toBe(9_000_000);
    expect(pricing.get('gemini-9-pro')).toMatchObject({ provider: 'google', outputMicro: 12_000_000 });
    expect(pricing.find('anthropic.claude-x')).toBeUndefined();
    expect(pricing.find('dall-e-9')).toBeUndefined();
    // Rows the source does not name keep the shipped prices.
    expect(pricing.get('claude-sonnet-4-5').inputMicro).toBe(3_000_000);
  });

  it('has a version of its rows: the same file re-indented is the same version, another price another', () => {
    const one = createPricing().loadSource(LITELLM).version;
    const two = createPricing().loadSource(JSON.stringify(JSON.parse(LITELLM), null, 2)).version;
    expect(two).toBe(one);
    const changed = LITELLM.replace(String(perToken(2.5)), String(perToken(2.6)));
    expect(createPricing().loadSource(changed).version).not.toBe(one);
  });

  it('says what changed, model by model', () => {
    const pricing = createPricing();
    const first = pricing.loadSource(LITELLM);
    expect(first.changes.find((change) => change.model === 'brand-new-model')).toMatchObject({ before: null });
    const second = pricing.loadSource(LITELLM.replace(String(perToken(10)), String(perToken(11))));
    expect(second.changes).toEqual([
      expect.objectContaining({
        model: 'gpt-4o',
        before: expect.objectContaining({ outputPerMTok: 10 }),
        after: expect.objectContaining({ outputPerMTok: 11 }),
      }),
    ]);
  });

  it.each([
    ['a negative cost', file({ 'gpt-4o': { litellm_provider: 'openai', input_cost_per_token: -1e-6 } })],
    ['a cost that is text', file({ 'gpt-4o': { litellm_provider: 'openai', input_cost_per_token: '0.1' } })],
    [
      'a tier cost past the most a price may be',
      file({ x: { litellm_provider: 'openai', input_cost_per_token: 1e-6, output_cost_per_token_flex: 0.5 } }),
    ],
    ['no JSON', '{"gpt-4o": '],
    ['a list', '[]'],
    ['no row served here', file({ 'bedrock/x': { litellm_provider: 'bedrock', input_cost_per_token: 1e-6 } })],
  ])('refuses %s whole and keeps the prices in use', (_what, text) => {
    const pricing = createPricing();
    const kept = pricing.loadSource(LITELLM).version;
    expect(() => pricing.loadSource(text)).toThrow(TollgateError);
    expect(pricing.version).toBe(kept);
    expect(pricing.get('gpt-4o').inputMicro).toBe(2_500_000);
  });

  it("reads @pydantic/genai-prices' data: its rows, match rules and long-context prices", () => {
    const genaiPrices = JSON.stringify([
      {
        id: 'openai',
        models: [
          {
            id: 'gpt-9',
            match: { or: [{ equals: 'gpt-9' }, { starts_with: 'gpt-9-turbo' }] },
            prices: { input_mtok: { base: 3, tiers: [{ start: 100_000, price: 6 }] }, output_mtok: 12 },
          },
          // Input only, for a chat model: taking it would bill its output at $0.
          { id: 'gpt-4o', match: { equals: 'gpt-4o' }, prices: { input_mtok: 2.5 } },
        ],
      },
      {
        id: 'some-other-host',
        models: [{ id: 'x', match: { equals: 'x' }, prices: { input_mtok: 1, output_mtok: 1 } }],
      },
    ]);
    const pricing = createPricing();
    const shippedGpt4o = pricing.get('gpt-4o');
    const update = pricing.loadSource(genaiPrices);
    expect(update.refused).toEqual([{ model: 'openai/gpt-4o', reason: 'no output price' }]);
    expect(pricing.get('gpt-4o')).toEqual(shippedGpt4o);
    // An alias the source's rule names, and its long-context price past 100,000 input tokens.
    const turbo = pricing.get('gpt-9-turbo-2099');
    expect(turbo).toMatchObject({ model: 'gpt-9', inputMicro: 3_000_000, outputMicro: 12_000_000 });
    expect(turbo.longContext).toMatchObject({ aboveInputTokens: 100_000, price: { inputMicro: 6_000_000 } });
    expect(pricing.find('x')).toBeUndefined();
  });

  it('refuses a row missing a cost its provider bills, by name, and never bills that class at $0', () => {
    const pricing = createPricing();
    const shipped = pricing.get('gpt-4o');
    const update = pricing.loadSource(
      file({
        'gpt-4o': { litellm_provider: 'openai', mode: 'chat', input_cost_per_token: perToken(1) },
        'gpt-new': { litellm_provider: 'openai', mode: 'chat', input_cost_per_token: perToken(3) },
        'brand-new-model': {
          litellm_provider: 'openai',
          mode: 'chat',
          input_cost_per_token: perToken(0.7),
          output_cost_per_token: perToken(2.8),
        },
      }),
    );
    expect(update.refused).toEqual([
      { model: 'gpt-4o', reason: 'no output_cost_per_token' },
      { model: 'gpt-new', reason: 'no output_cost_per_token' },
    ]);
    expect(pricing.get('gpt-4o')).toEqual(shipped);
    expect(pricing.find('gpt-new')).toBeUndefined();
    // 1,000 input and 1,000 output tokens of the refused row's model: billed at the shipped prices, output included.
    const usage = {
      inputTokens: 1000,
      cachedInputTokens: 0,
      cacheWriteTokens: 0,
      outputTokens: 1000,
      reasoningTokens: 0,
    };
    expect(costNanoUsd(usage, pricing.get('gpt-4o'))).toBe(1000 * 2500 + 1000 * 10_000);
  });

  it("takes Gemini's own row over Vertex's of the same id, and Azure's only where no provider's own row is", () => {
    const pricing = createPricing();
    pricing.loadSource(
      file({
        'gemini-2.5-pro': {
          litellm_provider: 'vertex_ai-language-models',
          input_cost_per_token: perToken(9),
          output_cost_per_token: perToken(99),
        },
        'gemini/gemini-2.5-pro': {
          litellm_provider: 'gemini',
          input_cost_per_token: perToken(1.5),
          output_cost_per_token: perToken(11),
        },
        'azure/gpt-4o': {
          litellm_provider: 'azure',
          input_cost_per_token: perToken(7),
          output_cost_per_token: perToken(7),
        },
        'gpt-4o': { litellm_provider: 'openai', input_cost_per_token: perToken(2), output_cost_per_token: perToken(8) },
        'azure/gpt-only-on-azure': {
          litellm_provider: 'azure',
          input_cost_per_token: perToken(1),
          output_cost_per_token: perToken(4),
        },
      }),
    );
    expect(pricing.get('gemini-2.5-pro')).toMatchObject({
      provider: 'google',
      inputMicro: 1_500_000,
      outputMicro: 11_000_000,
    });
    expect(pricing.get('gpt-4o')).toMatchObject({ provider: 'openai', inputMicro: 2_000_000 });
    expect(pricing.get('gpt-only-on-azure')).toMatchObject({ provider: 'azure-openai', outputMicro: 4_000_000 });
  });
});

describe('service tiers', () => {
  const pricing = createPricing({
    models: {
      mine: {
        provider: 'openai',
        inputPerMTok: 4,
        cachedInputPerMTok: 1,
        outputPerMTok: 8,
        serviceTiers: { flex: { inputPerMTok: 2, outputPerMTok: 4 } },
      },
    },
  });
  pricing.loadSource(LITELLM);
  const usage = {
    inputTokens: 1000,
    cachedInputTokens: 0,
    cacheWriteTokens: 0,
    outputTokens: 1000,
    reasoningTokens: 0,
  };

  it('prices a tier the model names at its prices, any other at the standard ones', () => {
    expect(costNanoUsd(usage, pricing.get('gpt-4o', 'flex'))).toBe(6_250_000);
    expect(costNanoUsd(usage, pricing.get('gpt-4o', 'priority'))).toBe(21_250_000);
    expect(costNanoUsd(usage, pricing.get('gpt-4o', 'default'))).toBe(12_500_000);
    expect(costNanoUsd(usage, pricing.get('gpt-4o'))).toBe(12_500_000);
    expect(pricing.get('mine', 'flex')).toMatchObject({
      tier: 'flex',
      inputMicro: 2_000_000,
      cachedInputMicro: 1_000_000,
      cacheWriteMicro: 2_000_000,
    });
  });

  it('refuses a tier price out of range in code', () => {
    expect(() =>
      createPricing({
        models: {
          bad: { provider: 'openai', inputPerMTok: 1, outputPerMTok: 1, serviceTiers: { flex: { outputPerMTok: -1 } } },
        },
      }),
    ).toThrow(TollgateError);
  });
});

describe('a request’s prices', () => {
  it('stay those of its first pricing, whatever loads after, at the tier it asked for', () => {
    const pricing = createPricing();
    const ctx = request('flex');
    const before = pricing.forRequest(ctx);
    const shipped = pricing.version;
    expect(before.version).toBe(shipped);
    pricing.loadSource(LITELLM);
    const pinned = pricing.forRequest(ctx);
    expect(pinned).toBe(before);
    expect(pinned.version).toBe(shipped);
    expect(pricing.version).not.toBe(shipped);
    expect(pinned.find('brand-new-model')).toBeUndefined();
    // A request made after the load prices at the source, at its own tier.
    const next = pricing.forRequest(request('flex'));
    expect(next.get('gpt-4o')).toMatchObject({ tier: 'flex', inputMicro: 1_250_000 });
    expect(next.get('gpt-4o', 'priority').inputMicro).toBe(4_250_000);
  });
});
