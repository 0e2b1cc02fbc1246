// Packs every published package of the workspace into tarballs, the one packer of the packed installs
// (test/packed/run.mjs) and of the container recipe (deploy/Dockerfile): `node test/packed/pack.mjs DIR` after a build.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** `pnpm pack` of each package that is not private into `out`: package name → tarball path. Needs `pnpm build` first. */
export function packPackages(out) {
  mkdirSync(out, { recursive: true });
  const tarballs = new Map();
  for (const dir of readdirSync(path.join(ROOT, 'packages'))) {
    const manifest = JSON.parse(readFileSync(path.join(ROOT, 'packages', dir, 'package.json'), 'utf8'));
    if (manifest.private) continue;
    console.log(`$ (packages/${dir}) pnpm pack --pack-destination ${out}`);
    execFileSync('pnpm', ['pack', '--pack-destination', out], {
      cwd: path.join(ROOT, 'packages', dir),
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const file = path.join(out, `${manifest.name.replace('@', '').replace('/', '-')}-${manifest.version}.tgz`);
    if (!existsSync(file)) throw new Error(`pnpm pack wrote no ${file}`);
    tarballs.set(manifest.name, file);
  }
  return tarballs;
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const out = process.argv[2];
  if (!out) {
    console.error('Usage: node test/packed/pack.mjs DIR   (after pnpm build)');
    process.exit(2);
  }
  const tarballs = packPackages(path.resolve(out));
  console.log(`${tarballs.size} tarballs in ${path.resolve(out)}`);
}
