// The test suite never empties a Redis it shares: FLUSHALL / FLUSHDB and SCRIPT FLUSH only from files that start their own
// redis-server (a data loss simulated on a server no other test uses).
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from '@jest/globals';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SELF = fileURLToPath(import.meta.url);

/** Every TypeScript and JavaScript file under the folders tests and benchmarks run from. */
function sources(): string[] {
  const roots = [
    path.join(ROOT, 'test'),
    path.join(ROOT, 'bench'),
    ...['packages', 'examples'].flatMap((group) =>
      readdirSync(path.join(ROOT, group)).map((name) => path.join(ROOT, group, name, 'test')),
    ),
  ];
  const files: string[] = [];
  const walk = (dir: string) => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory() && entry.name !== 'node_modules') walk(full);
      else if (/\.(ts|js|mjs|cjs)$/.test(entry.name) && full !== SELF) files.push(full);
    }
  };
  roots.forEach(walk);
  return files;
}

// Commands as a client sends them (quoted words or client methods), not words in a comment.
const wholeServer = /['"`](FLUSHALL|FLUSHDB)['"`]|\.(flushAll|flushDb)\s*\(/i;
const scriptFlush = /['"`]SCRIPT['"`]\s*,\s*['"`]FLUSH['"`]|\.scriptFlush\s*\(/i;
/** A file that starts its own redis-server (or cluster) may flush the scripts of that server. */
const ownServer = /\bPrivateRedis\b|\bstartRedisCluster\s*\(/;

describe('commands the tests send to Redis', () => {
  const files = sources();

  it('finds the test sources', () => {
    expect(files.some((file) => file.endsWith('script-bundle.test.ts'))).toBe(true);
  });

  it('flush a whole database only from files that start their own Redis', () => {
    const offenders = files.filter((file) => {
      const text = readFileSync(file, 'utf8');
      return wholeServer.test(text) && !ownServer.test(text);
    });
    expect(offenders.map((file) => path.relative(ROOT, file))).toEqual([]);
  });

  it('send SCRIPT FLUSH only from files that start their own Redis', () => {
    const offenders = files.filter((file) => {
      const text = readFileSync(file, 'utf8');
      return scriptFlush.test(text) && !ownServer.test(text);
    });
    expect(offenders.map((file) => path.relative(ROOT, file))).toEqual([]);
  });
});
