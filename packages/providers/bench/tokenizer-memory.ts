// Load time and memory of one encoding, ours (against gpt-tokenizer's for OpenAI's), each loaded in a fresh process.
//   node --import tsx packages/providers/bench/tokenizer-memory.ts
import { execFileSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { BytePairEncoding } from '../src/bpe.js';

const TOKENIZERS = ['ours', 'gpt-tokenizer'] as const;
const ENCODINGS = ['o200k_base', 'cl100k_base', 'llama3', 'tekken', 'qwen2', 'gemma'] as const;
/** gpt-tokenizer has OpenAI's encodings only. */
const OPENAI = new Set<string>(['o200k_base', 'cl100k_base']);
const RUNS = 3;
const WARM_UP_TEXT = 'Warm up: naïve café, 数据 😀 {"json": [1, 2.5]} <|endoftext|>\n\tcode();';

interface Measure {
  loadMs: number;
  heapMiB: number;
  rssMiB: number;
  heapAfterGcMiB: number;
  rssAfterGcMiB: number;
}

const MiB = 1024 * 1024;
const gc = (globalThis as { gc?: () => void }).gc;

/** In the child: loads one encoding and prints what it cost. */
async function measure(tokenizer: string, encoding: (typeof ENCODINGS)[number]): Promise<Measure> {
  if (!gc) throw new Error('run the child with --expose-gc');
  gc();
  const before = process.memoryUsage();
  const start = performance.now();
  let count: (text: string) => number;
  if (tokenizer === 'ours') {
    const ours = await BytePairEncoding.load(encoding, 10_000);
    count = (text) => ours.countTokens(text);
  } else {
    const module = (await import(`gpt-tokenizer/encoding/${encoding}`)) as typeof import('gpt-tokenizer');
    count = (text) => module.countTokens(text, { disallowedSpecial: new Set() });
  }
  count(WARM_UP_TEXT);
  const loadMs = performance.now() - start;
  const loaded = process.memoryUsage();
  gc();
  const settled = process.memoryUsage();
  // Keep the encoding reachable until measured.
  if (count('x') !== 1) throw new Error('bad count');
  return {
    loadMs,
    heapMiB: (loaded.heapUsed - before.heapUsed) / MiB,
    rssMiB: (loaded.rss - before.rss) / MiB,
    heapAfterGcMiB: (settled.heapUsed - before.heapUsed + settled.arrayBuffers - before.arrayBuffers) / MiB,
    rssAfterGcMiB: (settled.rss - before.rss) / MiB,
  };
}

const [tokenizer, encoding] = process.argv.slice(2);
if (tokenizer !== undefined) {
  console.log(JSON.stringify(await measure(tokenizer, encoding as (typeof ENCODINGS)[number])));
} else {
  const self = fileURLToPath(import.meta.url);
  console.log('median of 3 fresh processes each; memory is the growth over the process before the load');
  console.log('encoding     tokenizer       load ms  heap MiB  RSS MiB  heap+buffers after GC  RSS after GC');
  for (const name of ENCODINGS) {
    for (const candidate of TOKENIZERS) {
      if (candidate !== 'ours' && !OPENAI.has(name)) continue;
      const runs = Array.from({ length: RUNS }, () => {
        const out = execFileSync(process.execPath, ['--expose-gc', '--import', 'tsx', self, candidate, name]);
        return JSON.parse(out.toString()) as Measure;
      });
      const median = (key: keyof Measure) => runs.map((run) => run[key]).sort((a, b) => a - b)[Math.floor(RUNS / 2)]!;
      console.log(
        `${name.padEnd(13)}${candidate.padEnd(14)}${median('loadMs').toFixed(0).padStart(9)}` +
          `${median('heapMiB').toFixed(1).padStart(10)}${median('rssMiB').toFixed(1).padStart(9)}` +
          `${median('heapAfterGcMiB').toFixed(1).padStart(23)}${median('rssAfterGcMiB').toFixed(1).padStart(14)}`,
      );
    }
  }
}
