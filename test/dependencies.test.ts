// Proves the module setup: jest (native ESM) loads every runtime dependency, ESM-only ones included; and that every
// dependency an npm user installs runs on the Node versions our packages declare (issue 44).
import { existsSync, readdirSync, readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from '@jest/globals';
import semver from 'semver';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const dependencies = [
  'express',
  'express-rate-limit',
  'rate-limit-redis',
  'helmet',
  'passport',
  'passport-http-bearer',
  'redis',
  'jose',
  'prom-client',
  'pg',
  'pino',
  'undici',
  'openai',
  '@anthropic-ai/sdk',
  'supertest',
];

describe('module setup', () => {
  it.each(dependencies)('imports %s', async (name) => {
    const mod: Record<string, unknown> = await import(name);
    expect(Object.keys(mod).length).toBeGreaterThan(0);
  });

  it('imports jose 6, which ships ESM only, and uses it', async () => {
    const jose = await import('jose');
    const { privateKey, publicKey } = await jose.generateKeyPair('ES256');
    const token = await new jose.SignJWT({ sub: 'u1' }).setProtectedHeader({ alg: 'ES256' }).sign(privateKey);
    const { payload } = await jose.jwtVerify(token, publicKey);
    expect(payload.sub).toBe('u1');
  });

  it('resolves workspace packages to their TypeScript sources', async () => {
    const core = await import('@tollgate/core');
    expect(typeof core.createPricing).toBe('function');
  });
});

/** A package's folder as Node finds it from `from`: the nearest node_modules/<name> up the tree (pnpm's layout too). */
function packageDir(name: string, from: string): string | undefined {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'node_modules', name);
    if (existsSync(path.join(candidate, 'package.json'))) return realpathSync(candidate);
    if (path.dirname(dir) === dir) return undefined;
  }
}

interface Manifest {
  name: string;
  version: string;
  private?: boolean;
  engines?: { node?: string };
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
}

const readManifest = (dir: string): Manifest => JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'));

/**
 * What an npm user of the published packages installs: each package's dependencies and peers (optional ones too: an
 * app adds them to use a feature), and theirs, transitively.
 */
function installedForUsers(): Map<string, Manifest> {
  const found = new Map<string, Manifest>();
  const visit = (dir: string, names: string[]) => {
    for (const name of names) {
      const depDir = packageDir(name, dir);
      if (!depDir || found.has(depDir)) continue;
      const manifest = readManifest(depDir);
      found.set(depDir, manifest);
      visit(depDir, Object.keys({ ...manifest.dependencies, ...manifest.optionalDependencies }));
    }
  };
  for (const dir of readdirSync(path.join(ROOT, 'packages'))) {
    const pkgDir = path.join(ROOT, 'packages', dir);
    const manifest = readManifest(pkgDir);
    if (manifest.private) continue;
    const names = Object.keys({ ...manifest.dependencies, ...manifest.peerDependencies });
    visit(
      pkgDir,
      names.filter((name) => !name.startsWith('@tollgate/') && !name.startsWith('@types/')),
    );
  }
  return found;
}

describe('the Node versions we declare', () => {
  const declared = readManifest(ROOT).engines!.node!;

  it('are the same range in every published package and the workspace', () => {
    const ranges = readdirSync(path.join(ROOT, 'packages')).map(
      (dir) => readManifest(path.join(ROOT, 'packages', dir)).engines?.node,
    );
    expect(new Set(ranges)).toEqual(new Set([declared]));
  });

  it('include the Node that runs the tests (CI runs the range it declares)', () => {
    expect(semver.satisfies(process.version, declared)).toBe(true);
  });

  it('are supported by every dependency an npm user installs, optional peers included', () => {
    const installed = installedForUsers();
    expect(installed.size).toBeGreaterThan(50);
    const narrower = [...installed.values()]
      .filter(({ engines }) => engines?.node && !semver.subset(declared, engines.node))
      .map(({ name, version, engines }) => `${name}@${version} needs node ${engines!.node}`);
    expect(narrower).toEqual([]);
  });
});
