// Measures the exact BPE tokenizers (ours, gpt-tokenizer, js-tiktoken, tiktoken WASM) on 1 KB / 100 KB / 1 MB prompts.
//   node --import tsx packages/providers/bench/tokenizers.ts
import { performance } from 'node:perf_hooks';
import { countTokens as gptTokenizerCount } from 'gpt-tokenizer/encoding/o200k_base';
import { Tiktoken as JsTiktoken } from 'js-tiktoken/lite';
import o200k from 'js-tiktoken/ranks/o200k_base';
import { get_encoding } from 'tiktoken';
import { BytePairEncoding } from '../src/bpe.js';

// Prose with code, numbers and punctuation, deterministic so every run measures the same text.
function samplePrompt(bytes: number, start = 1): string {
  const words = [
    'the',
    'request',
    'budget',
    'tenant',
    'function',
    'return',
    'const',
    'value',
    '{',
    '}',
    '(x)',
    '=>',
    '42',
    '3.14159',
    'naïve',
    'café',
    'über',
    '数据',
    'tokens',
    'stream',
    '\n',
    'async',
    'await',
    'JSON.parse',
    '"quoted"',
    'multi-line',
    'an',
    'of',
    'and',
  ];
  let seed = start;
  let out = '';
  while (out.length < bytes) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    out += `${words[seed % words.length]} `;
  }
  return out.slice(0, bytes);
}

// Made-up words of random letters: defeats merge caches, the worst realistic case for BPE.
function variedPrompt(bytes: number, start = 7): string {
  let seed = start;
  let out = '';
  while (out.length < bytes) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    const length = 1 + (seed % 11);
    for (let i = 0; i < length; i++) {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      out += String.fromCharCode(97 + (seed % 26));
    }
    out += seed % 13 === 0 ? '.\n' : ' ';
  }
  return out.slice(0, bytes);
}

const ours = await BytePairEncoding.load('o200k_base', 10_000);
const jsTiktoken = new JsTiktoken(o200k);
const wasm = get_encoding('o200k_base');
const candidates: Record<string, (text: string) => number> = {
  ours: (text) => ours.countTokens(text),
  'gpt-tokenizer': (text) => gptTokenizerCount(text, { disallowedSpecial: new Set() }),
  'js-tiktoken': (text) => jsTiktoken.encode(text, [], []).length,
  'tiktoken (wasm)': (text) => wasm.encode_ordinary(text).length,
};

// Every timed run gets a text it has never seen (a new seed), so merge caches cannot flatter a candidate.
for (const [corpus, make] of [
  ['prose+code', samplePrompt],
  ['random words', variedPrompt],
] as const) {
  for (const size of [1_000, 100_000, 1_000_000]) {
    const runs = size >= 1_000_000 ? 3 : size >= 100_000 ? 10 : 100;
    const counts = new Set<string>();
    for (const [name, count] of Object.entries(candidates)) {
      // Warm up (the JIT) on as many texts as are timed, none of them timed.
      for (let i = 0; i < runs; i++) count(make(size, 500 + i));
      const texts = Array.from({ length: runs }, (_, i) => make(size, 1000 + i));
      const tokens: number[] = [];
      const start = performance.now();
      for (const text of texts) tokens.push(count(text));
      const ms = (performance.now() - start) / runs;
      counts.add(tokens.join(','));
      console.log(
        `${corpus.padEnd(13)}${String(size).padStart(8)} B  ${name.padEnd(16)} ${ms.toFixed(3).padStart(9)} ms  ${tokens[0]} tokens`,
      );
    }
    console.log(counts.size === 1 ? '          all exact (same counts)' : '          COUNTS DIFFER');
  }
}
wasm.free();
