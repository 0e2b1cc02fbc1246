// Measures the exact BPE tokenizers (ours, gpt-tokenizer, js-tiktoken, tiktoken WASM) on 1 KB / 100 KB / 1 MB prompts:
// the median time per count.
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

// Every timed run gets a text it has never seen (a new seed), so merge caches cannot flatter a candidate. The candidates
// take turns on each text (a different one first each time), and the median run is reported: on a shared machine a
// burst of load then slows every candidate alike instead of the one timed at that moment.
const entries = Object.entries(candidates);
for (const [corpus, make] of [
  ['prose+code', samplePrompt],
  ['random words', variedPrompt],
] as const) {
  for (const size of [1_000, 100_000, 1_000_000]) {
    const runs = size >= 1_000_000 ? 5 : size >= 100_000 ? 21 : 201;
    // Warm up (the JIT) on at least a megabyte of texts, none of them timed.
    for (const [, count] of entries) for (let i = 0; i < Math.ceil(1_000_000 / size); i++) count(make(size, 5_000 + i));
    const times = entries.map((): number[] => []);
    const tokens = entries.map((): number[] => []);
    for (let run = 0; run < runs; run++) {
      const text = make(size, 1000 + run);
      for (let turn = 0; turn < entries.length; turn++) {
        const which = (run + turn) % entries.length;
        const start = performance.now();
        tokens[which]!.push(entries[which]![1](text));
        times[which]!.push(performance.now() - start);
      }
    }
    entries.forEach(([name], which) => {
      const ms = times[which]!.sort((a, b) => a - b)[runs >> 1]!;
      console.log(
        `${corpus.padEnd(13)}${String(size).padStart(8)} B  ${name.padEnd(16)} ${ms.toFixed(3).padStart(9)} ms  ${tokens[which]![0]} tokens`,
      );
    });
    const same = new Set(tokens.map((counts) => counts.join(','))).size === 1;
    console.log(same ? '          all exact (same counts)' : '          COUNTS DIFFER');
  }
}
wasm.free();
