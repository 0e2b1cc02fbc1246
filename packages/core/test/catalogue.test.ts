// The shipped catalogue: what the maintained source says, with its match rules, long-context and tier prices.
import { describe, expect, it } from '@jest/globals';
import { createPricing, DEFAULT_PRICES } from '../src/index.js';
import { DEFAULT_PRICES_SOURCE } from '../src/catalogue.js';
import { costNanoUsd, maxCostNanoUsd } from '../src/costs.js';
import { MAINTAINED_AS_OF, MAINTAINED_ROWS, MAINTAINED_SOURCE } from '../src/catalogue-maintained.js';
import { maintainedRows, maintainedVersion } from '../scripts/update-catalogue.js';

const pricing = createPricing();
const usage = (inputTokens: number, outputTokens: number) => ({
  inputTokens,
  cachedInputTokens: 0,
  cacheWriteTokens: 0,
  outputTokens,
  reasoningTokens: 0,
});

describe('the shipped catalogue', () => {
  it('is what `pnpm prices:update` makes of the installed @pydantic/genai-prices', () => {
    expect(MAINTAINED_SOURCE).toBe(`@pydantic/genai-prices@${maintainedVersion()}`);
    expect(DEFAULT_PRICES_SOURCE).toBe(MAINTAINED_SOURCE);
    expect(JSON.parse(JSON.stringify(MAINTAINED_ROWS))).toEqual(
      JSON.parse(JSON.stringify(maintainedRows(MAINTAINED_AS_OF))),
    );
  });

  it('prices every class each provider bills for every model it knows', () => {
    const missing: string[] = [];
    for (const [id, row] of Object.entries(DEFAULT_PRICES)) {
      // A model billed by the minute, the character or the image bills that unit, not tokens.
      const unit = (['audioPerMinute', 'perMCharacters', 'perImage'] as const).find(
        (field) => row[field] !== undefined,
      );
      const billed = unit ? [unit] : ['inputPerMTok'];
      if (!unit && row.kind !== 'embedding') billed.push('outputPerMTok');
      // Anthropic bills cache reads and writes of every model since Claude 3.
      if (row.provider === 'anthropic' && !/claude-(2|v1|instant)/.test(id))
        billed.push('cachedInputPerMTok', 'cacheWritePerMTok');
      for (const field of billed) {
        const usd = (row as unknown as Record<string, unknown>)[field];
        const priced =
          field === 'perImage' ? Object.values(usd as Record<string, number>).every((each) => each > 0) : true;
        if (
          !priced ||
          (field !== 'perImage' && (typeof usd !== 'number' || (field !== 'cachedInputPerMTok' && usd <= 0)))
        )
          missing.push(`${id}.${field}`);
      }
    }
    expect(missing).toEqual([]);
  });

  it("resolves the coding agents' default models, their dated ids and the source's aliases", () => {
    expect(pricing.get('claude-opus-5-5')).toMatchObject({ inputMicro: 4_000_000, outputMicro: 20_000_000 });
    expect(pricing.get('claude-opus-5-5-20261015').model).toBe('claude-opus-5-5');
    // An alias only the source's match rules know: no suffix of ours would strip it.
    expect(pricing.get('claude-opus-5.5').model).toBe('claude-opus-5-5');
    expect(pricing.get('gpt-5-1-codex').model).toBe('gpt-5.1');
    // Codex's default, not in the source yet: our own row, at gpt-6-sol's prices.
    expect(pricing.get('gpt-6.1-sol')).toMatchObject({
      inputMicro: pricing.get('gpt-6-sol').inputMicro,
      outputMicro: pricing.get('gpt-6-sol').outputMicro,
    });
    expect(pricing.find('my-own-llm')).toBeUndefined();
  });

  it('bills a prompt past the long-context threshold at the long-context prices, whole', () => {
    const sol = pricing.get('gpt-6-sol');
    const above = sol.longContext!.aboveInputTokens;
    // $2 in and $10 out per 1M tokens up to the threshold; $4 and $15 past it (the source's gpt-6-sol row).
    expect(costNanoUsd(usage(above, 1000), sol)).toBe(above * 2000 + 1000 * 10_000);
    expect(costNanoUsd(usage(above + 1, 1000), sol)).toBe((above + 1) * 4000 + 1000 * 15_000);
    // The reservation's bound is priced the same way, so a long prompt never reserves at the short price.
    expect(maxCostNanoUsd(above + 1, 1000, sol)).toBeGreaterThanOrEqual(costNanoUsd(usage(above + 1, 1000), sol));
  });

  it('ships batch, flex and priority tiers, and never bills priority at the standard price', () => {
    for (const id of Object.keys(DEFAULT_PRICES)) {
      const standard = pricing.get(id);
      // Tiers are the token models': embeddings and media (audio, images) have none.
      if (standard.provider !== 'openai' || standard.kind !== 'generation') continue;
      expect(pricing.get(id, 'priority').outputMicro).toBeGreaterThan(standard.outputMicro);
      expect(pricing.get(id, 'batch').outputMicro).toBe(standard.outputMicro / 2);
    }
    expect(pricing.get('gpt-5', 'priority')).toMatchObject({ inputMicro: 2_500_000, outputMicro: 20_000_000 });
    expect(pricing.get('gpt-5', 'flex')).toMatchObject({ inputMicro: 625_000, outputMicro: 5_000_000 });
    expect(pricing.get('claude-sonnet-4-5', 'batch').outputMicro).toBe(7_500_000);
  });

  it('names the prices in use in its version: one table, one version', () => {
    const cheap = createPricing({ models: { mine: { provider: 'openai', inputPerMTok: 2.5, outputPerMTok: 2.5 } } });
    const dear = createPricing({ models: { mine: { provider: 'openai', inputPerMTok: 99, outputPerMTok: 99 } } });
    const again = createPricing({ models: { mine: { provider: 'openai', inputPerMTok: 2.5, outputPerMTok: 2.5 } } });
    expect(cheap.version).not.toBe(dear.version);
    expect(cheap.version).toBe(again.version);
    expect(cheap.version).not.toBe(pricing.version);
  });
});
