// Keeps docs/errors.md true: every TollgateError code used in the sources has its own section, each error links to
// it at the repository's URL, and @tollgate/core ships it to npm users.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from '@jest/globals';
import { TollgateError } from '@tollgate/core';

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

  it('links each TollgateError to its section at the URL of the repository every package names', () => {
    const docs = readFileSync(join(root, 'docs/errors.md'), 'utf8');
    const repositories = new Set(
      readdirSync(join(root, 'packages')).map((dir) => {
        const manifest = JSON.parse(readFileSync(join(root, 'packages', dir, 'package.json'), 'utf8')) as {
          repository: { url: string };
        };
        return manifest.repository.url.replace(/^git\+/, '').replace(/\.git$/, '');
      }),
    );
    expect([...repositories]).toEqual(['https://github.com/tollgate/tollgate']);
    const error = new TollgateError('ERR_TG_CORE_INVALID_DURATION', 'bad duration');
    expect(error.docs).toBe(
      'https://github.com/tollgate/tollgate/blob/main/docs/errors.md#err-tg-core-invalid-duration',
    );
    expect(error.message).toBe(`bad duration (ERR_TG_CORE_INVALID_DURATION, see ${error.docs})`);
    // GitHub's anchor of a heading is its text, lower-cased: the section the link names is there.
    expect(docs).toContain(`\n#### ${error.docs.split('#')[1]}\n`);
  });

  it('is shipped in the packed @tollgate/core, as it is in the repository', () => {
    const out = mkdtempSync(join(tmpdir(), 'tollgate-core-pack-'));
    try {
      execFileSync('pnpm', ['pack', '--pack-destination', out], { cwd: join(root, 'packages/core'), stdio: 'ignore' });
      const tarball = readdirSync(out).find((name) => name.endsWith('.tgz'))!;
      execFileSync('tar', ['-xzf', join(out, tarball), '-C', out]);
      expect(readFileSync(join(out, 'package/docs/errors.md'), 'utf8')).toBe(
        readFileSync(join(root, 'docs/errors.md'), 'utf8'),
      );
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
