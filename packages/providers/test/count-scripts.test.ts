// Text written without spaces (Chinese, Japanese, Thai, base64) is counted exactly, and lower bounds never pass the count.
import { beforeAll, describe, expect, it } from '@jest/globals';
import { createPricing } from '@tollgate/core';
import {
  countTextTokens,
  estimateInputTokensAsync,
  estimateRequestAsync,
  preloadTokenizers,
} from '@tollgate/providers';
import { CountBudget } from '@tollgate/providers/count-budget';
import { MAX_TOKEN_BYTES } from '../src/tokenizer.js';
import { countTokens as cl100kCount } from 'gpt-tokenizer/encoding/cl100k_base';
import { countTokens as o200kCount, decode as o200kDecode } from 'gpt-tokenizer/encoding/o200k_base';
import { decode as cl100kDecode } from 'gpt-tokenizer/encoding/cl100k_base';

const PLAIN = { disallowedSpecial: new Set<string>() };
const exact = {
  o200k_base: (text: string) => o200kCount(text, PLAIN),
  cl100k_base: (text: string) => cl100kCount(text, PLAIN),
};

const CHINESE =
  '人工智能正在改变我们的生活方式。从智能手机到自动驾驶汽车，机器学习算法无处不在。研究人员表示，未来十年内，' +
  '这项技术将在医疗、教育和金融等领域发挥更大的作用。然而，专家们也提醒，必须重视数据隐私和算法公平性的问题。';
const JAPANESE =
  '東京の天気は今日も晴れです。週末には多くの人々が公園に集まり、桜の花を楽しみました。新しい駅の建設工事は来年の春に' +
  '完成する予定で、地元の商店街も期待を寄せています。しかし、交通渋滞の問題はまだ解決されていません。';
const THAI = 'ภาษาไทยเป็นภาษาที่มีเอกลักษณ์เฉพาะตัว การเขียนไม่มีการเว้นวรรคระหว่างคำ ทำให้การตัดคำเป็นเรื่องที่ท้าทาย ';
const base64 = (bytes: number, seed: number) =>
  Buffer.from(Array.from({ length: bytes }, (_, i) => (i * 7919 + seed) % 256)).toString('base64');

beforeAll(async () => {
  await preloadTokenizers();
});

describe('text without spaces', () => {
  it.each([
    ['Chinese', CHINESE.repeat(20)],
    ['Japanese', JAPANESE.repeat(20)],
    ['Thai', THAI.repeat(20)],
    ['base64', base64(6000, 13)],
  ])(
    '%s is cut where runs of letters end and counted exactly in both encodings (no piece bounded)',
    (_script, text) => {
      for (const encoding of ['o200k_base', 'cl100k_base'] as const) {
        const budget = new CountBudget(10_000);
        expect(countTextTokens(text, encoding, budget)).toBe(exact[encoding](text));
        expect(budget.bounded).toBe(false);
      }
    },
  );

  it('adds up pieces exactly on random mixes of every character class, at every cut the splitter makes', () => {
    const parts = [
      '数据',
      '。',
      '，',
      'ﾃｽﾄ',
      'café',
      "it's",
      "l'été",
      '’',
      'Ω',
      'ß',
      '😀',
      '👨‍👩‍👧',
      '🏳️‍🌈',
      '\u0301',
      'ก',
      'ั',
      '่',
      'क्ष',
      '42',
      '٣',
      '/',
      '+',
      '=',
      '-',
      '_',
      '.',
      ',',
      '!',
      '?',
      '"',
      "'",
      '(',
      ')',
      '\n',
      '\r\n',
      '\t',
      ' ',
      '  ',
      'ABC',
      'xyz',
      '\u00a0',
      '𠀋',
    ];
    for (let seed = 1; seed <= 40; seed++) {
      let state = seed;
      let text = '';
      while (text.length < 2_000) {
        state = (state * 1103515245 + 12345) & 0x7fffffff;
        text += parts[state % parts.length];
      }
      for (const encoding of ['o200k_base', 'cl100k_base'] as const) {
        expect({ seed, encoding, count: countTextTokens(text, encoding, new CountBudget(10_000)) }).toEqual({
          seed,
          encoding,
          count: exact[encoding](text),
        });
      }
    }
  });

  it('counts a 2,400-character Chinese prompt exactly: the estimate is the real count, not its bytes', async () => {
    const prompt = CHINESE.repeat(20).slice(0, 2_400);
    const ask = (content: string) =>
      estimateInputTokensAsync('openai.chat', { messages: [{ role: 'user', content }] }, 'gpt-4o-mini');
    const estimate = await ask(prompt);
    const framing = (await ask('')).tokens;
    const real = o200kCount(prompt, PLAIN);
    expect(estimate.exact).toBe(true);
    expect(estimate.tokens).toBe(real + framing);
    expect(estimate.tokens).toBeLessThan(Buffer.byteLength(prompt) / 2);
  });
});

describe('lower bounds (what the hard stop counts with)', () => {
  it('equal the exact count where the text is counted in time', () => {
    for (const text of [CHINESE, JAPANESE, THAI, base64(3000, 7), 'The quick brown fox. '.repeat(100)]) {
      expect(countTextTokens(text, 'o200k_base', new CountBudget(10_000), 'lower')).toBe(o200kCount(text, PLAIN));
    }
  });

  it('never pass the exact count where text is bounded: a spent budget and a run too long to count', () => {
    const text = CHINESE.repeat(10);
    const spent = new CountBudget(0);
    const lower = countTextTokens(text, 'o200k_base', spent, 'lower');
    expect(spent.bounded).toBe(true);
    expect(lower).toBe(Math.ceil(Buffer.byteLength(text) / MAX_TOKEN_BYTES));
    expect(lower).toBeLessThanOrEqual(o200kCount(text, PLAIN));
    // One run of 60,000 letters: too costly to count, bounded below by its bytes / 128 (above, by its bytes).
    const run = `start ${'a'.repeat(60_000)} end`;
    const below = countTextTokens(run, 'o200k_base', new CountBudget(10_000), 'lower');
    const above = countTextTokens(run, 'o200k_base', new CountBudget(10_000), 'upper');
    expect(below).toBeLessThanOrEqual(60_000 / 8 + 2);
    expect(above).toBeGreaterThanOrEqual(60_000 / 8);
    expect(below).toBeLessThan(above);
  });

  it('use the longest token of either vocabulary: 128 bytes', () => {
    let longest = 0;
    for (const [decode, size] of [
      [o200kDecode, 199_998],
      [cl100kDecode, 100_256],
    ] as const) {
      for (let id = 0; id < size; id++) longest = Math.max(longest, Buffer.byteLength(decode([id])));
    }
    expect(longest).toBe(MAX_TOKEN_BYTES);
  });
});

describe('the context window', () => {
  it('caps an estimate bounded by bytes: no reservation above what the model can be billed', async () => {
    const pricing = createPricing();
    const run = 'x'.repeat(3_000_000);
    const estimate = await estimateRequestAsync({
      api: 'openai.chat',
      body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: run }] },
      pricing,
    });
    expect(estimate.exact).toBe(false);
    expect(estimate.inputTokens).toBeLessThanOrEqual(128_000);
    expect(estimate.inputTokensBound).toBeLessThanOrEqual(128_000);
  });
});
