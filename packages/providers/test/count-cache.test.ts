import { beforeAll, describe, expect, it } from '@jest/globals';
import { createPricing } from '@tollgate/core';
import { estimateRequestAsync, estimateRequestAtOnce, preloadTokenizers, TokenCountCache } from '@tollgate/providers';
import type { EstimateRequestInput } from '@tollgate/providers';
import { countTokens as o200kCount } from 'gpt-tokenizer/encoding/o200k_base';

const PLAIN = { disallowedSpecial: new Set<string>() };
// A chat request with a system and a user message: 3 to prime the reply, 3 + 1 per message.
const FRAMING = 3 + 4 + 4;
const pricing = createPricing();

/** Words with spaces and a little punctuation, `chars` long, different for each seed. */
function prose(chars: number, seed: number): string {
  const words = ['invoice', 'quarterly', 'revenue', 'answer', 'naïve', 'café', '42', 'return', 'model', 'the'];
  const parts: string[] = [];
  let length = 0;
  for (let i = seed; length < chars; i++) {
    const word = words[(i * 7 + seed) % words.length]!;
    parts.push(word, i % 11 === 0 ? '. ' : ' ');
    length += word.length + 2;
  }
  return parts.join('').slice(0, chars);
}

function input(system: string, user: string, extra: Partial<EstimateRequestInput> = {}): EstimateRequestInput {
  return {
    api: 'openai.chat',
    body: {
      model: 'gpt-4o',
      messages: [
        { role: 'system', content: system },
        { role: 'user', content: user },
      ],
      max_tokens: 16,
    },
    pricing,
    maxEstimateMs: 60_000,
    ...extra,
  };
}

const exactCount = (system: string, user: string) => o200kCount(system, PLAIN) + o200kCount(user, PLAIN) + FRAMING;

beforeAll(async () => {
  await preloadTokenizers();
});

describe('estimates with a TokenCountCache', () => {
  it('give the exact count, found for a text sent again', async () => {
    const cache = new TokenCountCache();
    const system = prose(300, 1);
    const withCache = { countCache: cache, countScope: 'tenant-a' };
    const first = estimateRequestAtOnce(input(system, 'Say hello.', withCache))!;
    estimateRequestAtOnce(input(system, 'Say hello again.', withCache));
    expect(cache.size).toBeGreaterThan(0);
    const again = estimateRequestAtOnce(input(system, 'And goodbye, in French.', withCache))!;
    expect(first.inputTokens).toBe(exactCount(system, 'Say hello.'));
    expect(again.inputTokens).toBe(exactCount(system, 'And goodbye, in French.'));
    expect(again.exact).toBe(true);
    // The byte bound is the same whether a text was counted or found.
    const uncached = estimateRequestAtOnce(input(system, 'And goodbye, in French.'))!;
    expect(again).toEqual(uncached);
  });

  it('count a large prompt sent again no more: from its third sending it is estimated at once, not in slices', async () => {
    const cache = new TokenCountCache();
    const system = prose(200_000, 2);
    const withCache = { countCache: cache, countScope: 'tenant-a' };
    // Too large to count at once: the meter counts it in slices, the first time and the second (when it is kept).
    for (const question of ['First question?', 'Second question?']) {
      expect(estimateRequestAtOnce(input(system, question, withCache))).toBeUndefined();
      const sliced = await estimateRequestAsync(input(system, question, withCache));
      expect(sliced.inputTokens).toBe(exactCount(system, question));
    }
    const atOnce = estimateRequestAtOnce(input(system, 'Third question?', withCache));
    expect(atOnce?.inputTokens).toBe(exactCount(system, 'Third question?'));
    expect(atOnce?.exact).toBe(true);
  });

  it('keep no text seen once: a question never asked again takes no room', () => {
    const cache = new TokenCountCache();
    for (let index = 0; index < 1_000; index++)
      estimateRequestAtOnce(input('You are terse.', `Question number ${index}?`, { countCache: cache }));
    // The system prompt and the two role names, seen on every request; none of the questions.
    expect(cache.size).toBe(3);
  });

  it('keep scopes apart: a text kept for one tenant is counted again for another', async () => {
    const cache = new TokenCountCache();
    const system = prose(200_000, 3);
    await estimateRequestAsync(input(system, 'Hi', { countCache: cache, countScope: 'tenant-a' }));
    await estimateRequestAsync(input(system, 'Hi', { countCache: cache, countScope: 'tenant-a' }));
    expect(estimateRequestAtOnce(input(system, 'Hi', { countCache: cache, countScope: 'tenant-a' }))).toBeDefined();
    expect(estimateRequestAtOnce(input(system, 'Hi', { countCache: cache, countScope: 'tenant-b' }))).toBeUndefined();
    expect(estimateRequestAtOnce(input(system, 'Hi', { countCache: cache }))).toBeUndefined();
  });

  it('never keep a bound: a text the time budget ran out on is counted again later', async () => {
    const cache = new TokenCountCache();
    const system = prose(200_000, 4);
    // No time at all past the first 4,096 characters, which are always counted: the rest is bounded by its bytes.
    for (let sent = 0; sent < 3; sent++) {
      const bounded = await estimateRequestAsync(input(system, 'Hi', { countCache: cache, maxEstimateMs: 1e-9 }));
      expect(bounded.exact).toBe(false);
      expect(bounded.inputTokens).toBeGreaterThan(exactCount(system, 'Hi'));
    }
    const counted = await estimateRequestAsync(input(system, 'Hi', { countCache: cache }));
    expect(counted).toMatchObject({ exact: true, inputTokens: exactCount(system, 'Hi') });
  });

  it('count each encoding apart', () => {
    const cache = new TokenCountCache();
    const text = 'Ünïcödé and emoji 😀 are counted differently by the two encodings: 数据 数据 数据';
    const o200k = estimateRequestAtOnce({ ...input(text, 'x', { countCache: cache }), model: 'gpt-4o' })!;
    const cl100k = estimateRequestAtOnce({ ...input(text, 'x', { countCache: cache }), model: 'gpt-4' })!;
    expect(o200k.inputTokens).not.toBe(cl100k.inputTokens);
    expect(estimateRequestAtOnce({ ...input(text, 'x'), model: 'gpt-4' })!.inputTokens).toBe(cl100k.inputTokens);
  });
});

describe('TokenCountCache', () => {
  const scope = TokenCountCache.scopeKey('tenant', 'o200k_base');
  const text = (index: number) => `text number ${index}`;
  /** Kept from the second sighting. */
  const keep = (cache: TokenCountCache, index: number, tokens: number) => {
    cache.set(scope, text(index), tokens);
    cache.set(scope, text(index), tokens);
  };

  it('keeps a text from its second sighting', () => {
    const cache = new TokenCountCache();
    cache.set(scope, text(1), 7);
    expect(cache.get(scope, text(1))).toBeUndefined();
    cache.set(scope, text(1), 7);
    expect(cache.get(scope, text(1))).toBe(7);
    expect(cache.get(TokenCountCache.scopeKey('other tenant', 'o200k_base'), text(1))).toBeUndefined();
    expect(cache.get(TokenCountCache.scopeKey('tenant', 'cl100k_base'), text(1))).toBeUndefined();
  });

  it('counts sightings per scope: a text another tenant sent is not kept early', () => {
    const cache = new TokenCountCache();
    const other = TokenCountCache.scopeKey('other tenant', 'o200k_base');
    cache.set(other, text(2), 5);
    // Its first sighting in this scope only leaves a mark, as if the other tenant had never sent it.
    cache.set(scope, text(2), 5);
    expect(cache.get(scope, text(2))).toBeUndefined();
    cache.set(scope, text(2), 5);
    expect(cache.get(scope, text(2))).toBe(5);
    expect(cache.get(other, text(2))).toBeUndefined();
  });

  it('holds at most its characters, a text in use staying while others age out', () => {
    // 64 characters of overhead per entry: each generation of 2,000 holds about 24 of these texts.
    const cache = new TokenCountCache(4_000);
    keep(cache, 0, 100);
    for (let index = 1; index <= 1_000; index++) {
      keep(cache, index, index);
      expect(cache.get(scope, text(0))).toBe(100);
    }
    expect(cache.size).toBeLessThanOrEqual(2 * Math.ceil(2_000 / (text(1_000).length + 64)));
    expect(cache.get(scope, text(1))).toBeUndefined();
    expect(cache.get(scope, text(1_000))).toBe(1_000);
  });

  it('forgets every count and every mark when cleared', () => {
    const cache = new TokenCountCache();
    keep(cache, 3, 9);
    expect(cache.get(scope, text(3))).toBe(9);
    cache.clear();
    expect(cache.size).toBe(0);
    expect(cache.get(scope, text(3))).toBeUndefined();
    // The mark is gone too: the next sighting is a first one again.
    cache.set(scope, text(3), 9);
    expect(cache.get(scope, text(3))).toBeUndefined();
  });

  it('keeps no text longer than an eighth of its size', () => {
    const cache = new TokenCountCache(8_000);
    expect(cache.keeps(1_000)).toBe(true);
    expect(cache.keeps(1_001)).toBe(false);
    cache.set(scope, 'x'.repeat(1_001), 1);
    cache.set(scope, 'x'.repeat(1_001), 1);
    expect(cache.size).toBe(0);
  });

  it('refuses a size that is not a positive integer', () => {
    for (const size of [0, -1, 1.5, Number.NaN]) {
      expect(() => new TokenCountCache(size)).toThrow(
        expect.objectContaining({ code: 'ERR_TG_PROVIDERS_INVALID_OPTION' }),
      );
    }
  });
});
