// Deterministic estimation inputs: realistic prompts of a given size and the pathological megabytes.

/** A small linear congruential generator: the same seed gives the same text on every machine. */
function lcg(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state = (Math.imul(state, 1103515245) + 12345) & 0x7fffffff;
    return state;
  };
}

const WORDS = [
  'the',
  'model',
  'should',
  'answer',
  'customer',
  'invoice',
  'please',
  'summarise',
  'following',
  'report',
  'and',
  'of',
  'to',
  'in',
  'quarterly',
  'revenue',
  'increased',
  'by',
  '12.5%',
  'compared',
  'with',
  'last',
  'year',
  'function',
  'return',
  'const',
  'value',
  '{',
  '}',
  '(x)',
  '=>',
  '42',
  'JSON.parse',
  '"quoted"',
  'naïve',
  'café',
  'Zürich',
  '数据',
  'tokens',
  'stream',
  'async',
  'await',
  'user:',
  'assistant:',
  'e.g.',
  'https://example.com/docs',
  'TODO',
  'é',
];

/** Prose mixed with code and a little non-ASCII, `chars` UTF-16 units long (≈ bytes: nearly all ASCII). */
export function prosePrompt(chars: number, seed = 1): string {
  const next = lcg(seed);
  const parts: string[] = [];
  let length = 0;
  while (length < chars) {
    const word = WORDS[next() % WORDS.length]!;
    const separator = next() % 17 === 0 ? '.\n' : ' ';
    parts.push(word, separator);
    length += word.length + separator.length;
  }
  return parts.join('').slice(0, chars);
}

/** One character repeated: a single pre-token a megabyte long, the classic BPE worst case. */
function repeatedChar(chars: number): string {
  return 'a'.repeat(chars);
}

/** Random code points from every plane people type in (Latin, Cyrillic, CJK, emoji, combining marks), about `bytes` UTF-8 bytes. */
function randomUnicode(bytes: number, seed = 7): string {
  const next = lcg(seed);
  const ranges: [number, number][] = [
    [0x20, 0x7e],
    [0xa0, 0x24f],
    [0x300, 0x36f],
    [0x400, 0x4ff],
    [0x600, 0x6ff],
    [0x900, 0x97f],
    [0x3040, 0x30ff],
    [0x4e00, 0x9fff],
    [0xac00, 0xd7a3],
    [0x1f300, 0x1f64f],
    [0x1f900, 0x1f9ff],
  ];
  const parts: string[] = [];
  let size = 0;
  while (size < bytes) {
    const [low, high] = ranges[next() % ranges.length]!;
    const codePoint = low + (next() % (high - low + 1));
    const char = String.fromCodePoint(codePoint);
    parts.push(char);
    size += Buffer.byteLength(char);
  }
  return parts.join('');
}

/** Base64 with no break at all, as when a client pastes a file or an image into a prompt. */
function base64Blob(bytes: number, seed = 11): string {
  const next = lcg(seed);
  const raw = Buffer.alloc(Math.ceil((bytes * 3) / 4));
  for (let i = 0; i < raw.length; i++) raw[i] = next() & 0xff;
  return raw.toString('base64').slice(0, bytes);
}

interface EstimationInput {
  name: string;
  /** Builds the input; `variant` gives a fresh text per timed run so no tokenizer cache flatters it. */
  make(variant: number): string;
  /** Timed runs (fewer for the large inputs). */
  runs: number;
}

export function estimationInputs(quick: boolean): EstimationInput[] {
  const KB = 1024;
  const MB = 1024 * 1024;
  return [
    { name: '1 KB prompt', make: (v) => prosePrompt(KB, 100 + v), runs: quick ? 50 : 200 },
    { name: '100 KB prompt', make: (v) => prosePrompt(100 * KB, 200 + v), runs: quick ? 5 : 20 },
    { name: '1 MB prompt', make: (v) => prosePrompt(MB, 300 + v), runs: quick ? 2 : 5 },
    { name: '1 MB of one repeated character', make: () => repeatedChar(MB), runs: quick ? 1 : 2 },
    { name: '1 MB of random unicode', make: (v) => randomUnicode(MB, 400 + v), runs: quick ? 1 : 2 },
    { name: '1 MB base64, no break', make: (v) => base64Blob(MB, 500 + v), runs: quick ? 1 : 2 },
  ];
}
