// A price source read off the event loop: the part served here reads as the whole file does, and a refresh loads it.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import { createPricing } from '@tollgate/core';
import { readSourcePrices, servedPart } from '../src/price-source.js';

const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-price-read-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const perToken = (usdPerMTok: number) => usdPerMTok / 1_000_000;
const priced = (provider: string, input: number, extra: Record<string, unknown> = {}) => ({
  litellm_provider: provider,
  input_cost_per_token: perToken(input),
  output_cost_per_token: perToken(input * 4),
  ...extra,
});

/** A file of `filler` rows no adapter here serves, and a few it does (one prefixed row shadowed by an unpriced one). */
function priceFile(filler: number): string {
  const rows: Record<string, unknown> = {
    'gpt-4o': priced('openai', 2.5, { max_input_tokens: 128_000 }),
    'gemini/gemini-9-pro': priced('gemini', 2),
    // Its unprefixed id names a row refused (no input cost): the prefixed row, priced, is taken.
    'gemini/gemini-9-lite': priced('gemini', 0.1),
    'gemini-9-lite': { litellm_provider: 'gemini', mode: 'chat' },
    'text-embedding-9': priced('openai', 0.02, { mode: 'embedding' }),
  };
  for (let i = 0; i < filler; i++) rows[`bedrock/model-${i}`] = priced('bedrock', 1, { note: 'x'.repeat(200) });
  return JSON.stringify(rows);
}

describe('the part of a price file served here', () => {
  it('reads as the whole file: the same rows and version, from a fraction of its bytes', () => {
    const text = priceFile(5_000);
    const part = servedPart(text);
    expect(readSourcePrices(part)).toEqual(readSourcePrices(text));
    expect(Object.keys(readSourcePrices(part).rows).sort()).toEqual([
      'gemini-9-lite',
      'gemini-9-pro',
      'gpt-4o',
      'text-embedding-9',
    ]);
    expect(readSourcePrices(part).refused).toEqual([{ model: 'gemini-9-lite', reason: 'no input_cost_per_token' }]);
    expect(part.length).toBeLessThan(text.length / 100);
    expect(() => servedPart('[1]')).toThrow(/must have an id and a list of models/);
  });

  it('is what a refresh loads, read in a worker thread; a refused file keeps the prices in use', async () => {
    const source = path.join(dir, 'prices.json');
    writeFileSync(source, priceFile(1_000));
    const pricing = createPricing();
    const lines: string[] = [];
    const refresh = pricing.refreshFrom(
      { source, refreshMs: 3_600_000 },
      { info: (line) => void lines.push(line), error: (line) => void lines.push(line) },
    );
    await refresh.refresh();
    const { version } = createPricing().loadSource(priceFile(1_000));
    expect(refresh.status()).toMatchObject({ version, failures: 0 });
    expect(pricing.version).toBe(version);
    expect(pricing.models()).toContain('gemini-9-pro');
    writeFileSync(source, '{"gpt-4o": {"litellm_provider": "openai", "input_cost_per_token": -1}}');
    await refresh.refresh();
    expect(refresh.status()).toMatchObject({ failures: 1, lastError: { message: expect.stringMatching(/>= 0/) } });
    expect(pricing.version).toBe(version);
    refresh.close();
  });
});
