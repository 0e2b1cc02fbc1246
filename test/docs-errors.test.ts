// Keeps docs/errors.md true: every TollgateError code used in the sources has its own section.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from '@jest/globals';

const root = new URL('..', import.meta.url).pathname;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (name === 'node_modules' || name === 'dist' || name === 'test') return [];
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return path.endsWith('.ts') ? [path] : [];
  });
}

describe('docs/errors.md', () => {
  it('documents every ERR_TG code thrown by the packages and the example proxy', () => {
    const docs = readFileSync(join(root, 'docs/errors.md'), 'utf8');
    const codes = new Set<string>();
    for (const file of [...sourceFiles(join(root, 'packages')), ...sourceFiles(join(root, 'examples'))]) {
      const text = readFileSync(file, 'utf8');
      for (const match of text.matchAll(/ERR_TG_[A-Z]+_[A-Z_]+/g)) codes.add(match[0]);
      // Packages that build codes from a prefix constant: `${CODE}_NAME`.
      const prefix = /const CODE = '(ERR_TG_[A-Z]+)'/.exec(text)?.[1];
      if (prefix) for (const match of text.matchAll(/\$\{CODE\}_([A-Z_]+)/g)) codes.add(`${prefix}_${match[1]}`);
    }
    expect(codes.size).toBeGreaterThan(20);
    const missing = [...codes].filter((code) => !docs.includes(`#### ${code.toLowerCase().replace(/_/g, '-')}`));
    expect(missing).toEqual([]);
  });
});
