// Pricing lookups take model ids straight from request bodies: a client must not be able to make them hold memory.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from '@jest/globals';
import { createPricing } from '@tollgate/core';
import { modelFamilies } from '@tollgate/core/costs';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

function heapAfterGc(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

describe('createPricing lookups of client-chosen model ids', () => {
  it('do not keep megabyte model ids alive (a 1 MB body per request must not add 1 MB of heap per request)', () => {
    const pricing = createPricing({ defaultPrice: { provider: 'openai', inputPerMTok: 1, outputPerMTok: 2 } });
    const before = heapAfterGc();
    for (let i = 0; i < 100; i++) {
      // Flattened, as JSON.parse would hand it over.
      const model = `${i}-${'x'.repeat(1_000_000)}`;
      expect(pricing.find(model)?.model).toBe('default');
    }
    const grown = heapAfterGc() - before;
    // 100 ids of 1 MB each: kept, they would add about 100 MB.
    expect(grown).toBeLessThan(20_000_000);
  });

  it('still answers the same for long ids, and caches real ones', () => {
    const pricing = createPricing();
    const long = `gpt-4o-${'9'.repeat(5000)}`;
    expect(pricing.find(long)).toBeUndefined();
    expect(pricing.find(long)).toBeUndefined();
    expect(pricing.find('gpt-4o-2024-08-06')?.model).toBe('gpt-4o');
    expect(pricing.find('gpt-4o-2024-08-06')?.model).toBe('gpt-4o');
  });
});

describe('modelFamilies of a client-chosen id', () => {
  // A 1 MB id made of 200,000 date-like suffixes would give 200,000 candidates (and a long stall)
  // to every caller that walks them; no real model id comes near the cap.
  it('resolves ids of a real length and leaves absurdly long ones as they are', () => {
    expect(modelFamilies('gpt-4o-2024-08-06')).toEqual(['gpt-4o-2024-08-06', 'gpt-4o']);
    const long = `gpt-4o${'-1234'.repeat(200_000)}`;
    expect(modelFamilies(long)).toEqual([long]);
    expect(createPricing().find(long)).toBeUndefined();
  });
});
