// Our BPE counts exactly what gpt-tokenizer (the oracle) counts, in both encodings, over the rank tables shipped in data/.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { beforeAll, describe, expect, it } from '@jest/globals';
import { countTokens as cl100kCount } from 'gpt-tokenizer/encoding/cl100k_base';
import { countTokens as o200kCount } from 'gpt-tokenizer/encoding/o200k_base';
import { BytePairEncoding, MAX_TOKEN_BYTES } from '../src/bpe.js';
import { CountBudget, countTextTokens, preloadTokenizers } from '../src/tokenizer.js';

const ENCODINGS = ['o200k_base', 'cl100k_base'] as const;
const PLAIN = { disallowedSpecial: new Set<string>() };
const oracle = {
  o200k_base: (text: string) => o200kCount(text, PLAIN),
  cl100k_base: (text: string) => cl100kCount(text, PLAIN),
};

const ours = {} as Record<(typeof ENCODINGS)[number], BytePairEncoding>;
beforeAll(async () => {
  for (const name of ENCODINGS) ours[name] = await BytePairEncoding.load(name, 1_000);
  await preloadTokenizers();
});

describe('the shipped token tables', () => {
  // The published rank files, as gpt-tokenizer ships them: the token's bytes in base64 and its rank, one a line.
  const gptTokenizer = path.dirname(createRequire(import.meta.url).resolve('gpt-tokenizer/package.json'));

  it.each(ENCODINGS)('hold every rank of the published %s file, and nothing else', (name) => {
    const lines = readFileSync(path.join(gptTokenizer, 'data', `${name}.tiktoken`), 'utf8')
      .trim()
      .split('\n');
    const table = ours[name];
    expect(table.size).toBe(lines.length);
    let longest = 0;
    const wrong: string[] = [];
    for (const line of lines) {
      const [base64, rankText] = line.split(' ');
      const bytes = Buffer.from(base64!, 'base64');
      const rank = Number(rankText);
      longest = Math.max(longest, bytes.length);
      if (table.rankOf(bytes) !== rank || !Buffer.from(table.tokenBytes(rank)).equals(bytes)) wrong.push(line);
    }
    expect(wrong).toEqual([]);
    expect(longest).toBe(MAX_TOKEN_BYTES);
    // Bytes that are no token have no rank.
    expect(table.rankOf(Buffer.from(' '.repeat(MAX_TOKEN_BYTES + 1)))).toBe(-1);
    expect(table.rankOf(Buffer.from('tollgate-tokenizer'))).toBe(-1);
  });
});

/** A seeded random source (mulberry32), so every run checks the same corpus. */
function randomSource(seed: number) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const below = (n: number) => Math.floor(next() * n);
  const pick = <T>(items: readonly T[]): T => items[below(items.length)]!;
  return { below, pick };
}

const WORDS = ['the', 'request', 'Budget', "tenant's", 'don’t', "WE'LL", "it'S", 'naïve', 'café', 'Über', 'straße'];
const CODE = [
  'function foo(x) {\n  return x * 2;\n}\n',
  'const { a, b } = await import("./mod.js");',
  '\tif (n >= 0x7fff && s !== "") throw new Error(`bad ${n}`);\r\n',
  'def main():\n    print(f"{value!r:>10}")  # comment\n',
  '#include <stdio.h>\nint main(void) { return 0; }',
  '    SELECT id, name FROM users WHERE id IN (1, 2, 3);',
];
const SCRIPTS = [
  '人工智能正在改变我们的生活方式。',
  '東京の天気は今日も晴れです。カタカナ ﾃｽﾄ',
  '한국어 텍스트를 세어 봅니다.',
  'مرحبا بالعالم، هذا نص عربي.',
  'नमस्ते दुनिया, यह हिंदी पाठ है।',
  'ภาษาไทยเป็นภาษาที่มีเอกลักษณ์',
  'Привет, мир! Ёлка.',
  'Γειά σου Κόσμε',
];
const EMOJI = ['😀', '👨‍👩‍👧‍👦', '🏳️‍🌈', '👍🏽', '🇫🇷', '❤️', '🧑🏾‍💻', '✈︎'];
const SPECIAL = ['<|endoftext|>', '<|im_start|>', '<|im_end|>', '<|fim_prefix|>', '<|endofprompt|>'];
const SPACES = [' ', '  ', '\t', '\n', '\r\n', '\n\n', '\u00a0', '\u3000', '\u2028', ' \n ', '\v', '\f'];

/** One fragment of the corpus, of a kind chosen at random. */
function fragment(random: ReturnType<typeof randomSource>): string {
  const { below, pick } = random;
  const repeat = (make: () => string, n: number) => Array.from({ length: n }, make).join('');
  switch (below(14)) {
    case 0:
      return repeat(() => pick(WORDS) + pick([' ', ' ', ', ', '. ', '\n', '']), 1 + below(30));
    case 1:
      return pick(CODE);
    case 2:
      return JSON.stringify({ id: below(1e6), name: pick(WORDS), tags: [pick(SCRIPTS), below(100) / 7], ok: true });
    case 3:
      return pick(SCRIPTS).slice(below(5));
    case 4:
      return repeat(() => pick(EMOJI), 1 + below(6));
    case 5:
      // Combining marks on letters and alone.
      return repeat(() => pick(['e', 'A', 'ا', 'क', '']) + String.fromCharCode(0x300 + below(0x70)), 1 + below(8));
    case 6:
      // Random code units: lone surrogates, private use, controls, anything.
      return repeat(() => String.fromCharCode(below(0x10000)), 1 + below(20));
    case 7:
      return String.fromCodePoint(0x10000 + below(0x100000)) + String.fromCharCode(0xd800 + below(0x800));
    case 8:
      return pick([' ', '\n', '\t', '0', '7', 'a', 'Z', 'é', '数', '-', '=']).repeat(1 + below(300));
    case 9:
      return pick(SPECIAL);
    case 10:
      return [String(below(1e9)), (below(1e6) / 1000).toFixed(3), `-${below(99)}`, `1e${below(40)}`][below(4)]!;
    case 11:
      return repeat(() => pick(SPACES), 1 + below(6));
    case 12:
      return repeat(() => String.fromCharCode(97 + below(26)), 1 + below(40));
    default:
      return Buffer.from(
        repeat(() => String.fromCharCode(below(256)), 1 + below(60)),
        'latin1',
      ).toString('base64');
  }
}

function corpus(seed: number, samples: number): string[] {
  const random = randomSource(seed);
  return Array.from({ length: samples }, () => {
    let text = '';
    for (let parts = 1 + random.below(8); parts > 0; parts--) text += fragment(random);
    return text;
  });
}

describe('counts', () => {
  it.each(ENCODINGS)('are those of gpt-tokenizer on 3,000 seeded samples of mixed text in %s', (name) => {
    const differing: { text: string; ours: number; oracle: number }[] = [];
    for (const text of corpus(47, 3_000)) {
      const count = ours[name].countTokens(text);
      const expected = oracle[name](text);
      if (count !== expected) differing.push({ text, ours: count, oracle: expected });
    }
    expect(differing.slice(0, 5)).toEqual([]);
  });

  it.each(ENCODINGS)('stay exact on repeats (the chunk cache) and through the time-boxed count in %s', (name) => {
    const texts = corpus(4_700, 300);
    for (const text of [...texts, ...texts]) expect(ours[name].countTokens(text)).toBe(oracle[name](text));
    const whole = texts.join('\n');
    const budget = new CountBudget(60_000);
    expect(countTextTokens(whole, name, budget)).toBe(oracle[name](whole));
    expect(budget.bounded).toBe(false);
  });
});
