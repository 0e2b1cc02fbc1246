// CI: builds and packs every package, checks the tarballs, installs them with npm into fresh apps outside the
// workspace (ESM TypeScript and CommonJS JavaScript, Express 4 and 5, the official openai client) and runs them,
// installs the ESM app with pnpm and with yarn (Plug'n'Play) too, then copies examples/proxy out, installs it from
// the tarballs, starts it and has it serve a request; and installs @tollgate/gateway with Express 4 and with Express 5
// (no --legacy-peer-deps, --engine-strict), checks its node_modules' size (issue 44: at most 80 MB) and serves requests
// through it.
/* global fetch */
import { execFileSync, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { packPackages } from './pack.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const HERE = path.join(ROOT, 'test/packed');
const work = mkdtempSync(path.join(tmpdir(), 'tollgate-packed-'));
const keep = process.env.KEEP_PACKED === '1';

function run(command, args, cwd, extraEnv = {}) {
  console.log(`$ (${path.relative(work, cwd) || cwd}) ${command} ${args.join(' ')}`);
  return execFileSync(command, args, {
    cwd,
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, ...extraEnv },
    encoding: 'utf8',
  });
}

/** npm without the workspace's settings in the way: its own cache, no audit or funding noise. */
function npm(args, cwd) {
  return run('npm', [...args, '--no-audit', '--no-fund', '--loglevel=error'], cwd);
}

function packAll() {
  run('pnpm', ['build'], ROOT);
  return packPackages(path.join(work, 'tarballs'));
}

/** What npm would publish: no workspace protocol, the fields npm users need, every exported file present. */
function checkTarball(name, file) {
  const dir = path.join(work, 'unpacked', name.replace('/', '+'));
  mkdirSync(dir, { recursive: true });
  run('tar', ['-xzf', file, '-C', dir], work);
  const pkgDir = path.join(dir, 'package');
  const text = readFileSync(path.join(pkgDir, 'package.json'), 'utf8');
  const manifest = JSON.parse(text);
  const problems = [];
  if (text.includes('workspace:')) problems.push('a workspace: range is left in package.json');
  for (const field of ['engines', 'repository', 'license', 'exports', 'files'])
    if (!manifest[field]) problems.push(`no "${field}"`);
  for (const fileName of ['LICENSE', 'README.md'])
    if (!existsSync(path.join(pkgDir, fileName))) problems.push(`no ${fileName}`);
  // Only dist is published: no sources, tests or source maps (their paths lead to sources that are not there).
  for (const folder of ['src', 'test'])
    if (existsSync(path.join(pkgDir, folder))) problems.push(`${folder}/ is packed`);
  const maps = readdirSync(pkgDir, { recursive: true }).filter((file) => String(file).endsWith('.map'));
  if (maps.length > 0) problems.push(`${maps.length} source maps are packed (${maps[0]}, ...)`);
  const targets = [];
  const collect = (value) => {
    if (typeof value === 'string') targets.push(value);
    else if (value && typeof value === 'object') Object.values(value).forEach(collect);
  };
  collect(manifest.exports);
  for (const target of targets)
    if (!existsSync(path.join(pkgDir, target))) problems.push(`exports names ${target}, which is not in the tarball`);
  for (const [dep, range] of Object.entries({ ...manifest.dependencies, ...manifest.peerDependencies })) {
    if (dep.startsWith('@tollgate/') && !/^\^\d+\.\d+\.\d+$/.test(range))
      problems.push(`${dep} has range ${range}, not ^x.y.z`);
  }
  if (problems.length > 0) throw new Error(`${name}: ${problems.join('; ')}`);
}

/** A fresh app folder with `files` from test/packed/<fixture>, and the tarballs plus `deps` installed by npm. */
function freshApp(fixture, manifest, tarballs, deps, folder = fixture) {
  const dir = path.join(work, folder);
  mkdirSync(dir);
  cpSync(path.join(HERE, fixture), dir, { recursive: true });
  writeFileSync(
    path.join(dir, 'package.json'),
    JSON.stringify({ name: `packed-${fixture}`, private: true, ...manifest }, null, 2),
  );
  npm(['install', ...tarballs, ...deps], dir);
  return dir;
}

const TSCONFIG = JSON.stringify({
  compilerOptions: {
    target: 'ES2022',
    module: 'NodeNext',
    moduleResolution: 'NodeNext',
    strict: true,
    outDir: 'out',
    skipLibCheck: false,
    types: ['node'],
  },
  include: ['app.ts'],
});

/** The ESM TypeScript app: typechecked and compiled by tsc against the published types, then run. */
function esmTypeScript(tarballs) {
  const dir = freshApp('consumer-esm', { type: 'module' }, tarballs, [
    'express@5',
    '@types/express@5',
    'openai',
    'prom-client',
    'typescript@5',
    '@types/node@20',
  ]);
  writeFileSync(path.join(dir, 'tsconfig.json'), TSCONFIG);
  for (const express of ['5', '4']) {
    if (express === '4') npm(['install', 'express@4', '@types/express@4'], dir);
    run('npx', ['tsc', '-p', '.'], dir);
    process.stdout.write(run('node', ['out/app.js'], dir));
  }
}

/**
 * A package.json pointing every @tollgate package at its tarball: the tarballs stand in for the registry, so a
 * tarball's own `^0.1.0` dependencies on the others must resolve to them too (pnpm overrides, yarn resolutions).
 */
function tarballManifest(fixture, allTarballs, direct, field) {
  const spec = (name) => `file:${allTarballs.get(name)}`;
  const pinned = Object.fromEntries([...allTarballs.keys()].map((name) => [name, spec(name)]));
  const dependencies = Object.fromEntries(direct.map((name) => [name, spec(name)]));
  const manifest = { name: `packed-${fixture}`, private: true, type: 'module', dependencies };
  if (field === 'pnpm') manifest.pnpm = { overrides: pinned };
  else manifest.resolutions = pinned;
  return manifest;
}

/**
 * The ESM TypeScript app installed by pnpm (its strict node_modules: a package sees only what it declares) and by
 * yarn 4 with Plug'n'Play (the strictest: no node_modules at all, an undeclared import fails), typechecked against the
 * published types and run.
 */
function otherPackageManagers(allTarballs, direct) {
  const deps = ['express@5', '@types/express@5', 'openai', 'prom-client', 'typescript@5', '@types/node@20'];
  const registry = run('npm', ['config', 'get', 'registry'], work).trim();

  const pnpmDir = path.join(work, 'consumer-esm-pnpm');
  cpSync(path.join(HERE, 'consumer-esm'), pnpmDir, { recursive: true });
  writeFileSync(
    path.join(pnpmDir, 'package.json'),
    JSON.stringify(tarballManifest('consumer-esm-pnpm', allTarballs, direct, 'pnpm'), null, 2),
  );
  writeFileSync(path.join(pnpmDir, 'tsconfig.json'), TSCONFIG);
  run('pnpm', ['add', ...deps], pnpmDir);
  run('pnpm', ['exec', 'tsc', '-p', '.'], pnpmDir);
  process.stdout.write(run('node', ['out/app.js'], pnpmDir));

  // yarn 4 comes from the npm registry as a single file (no corepack here).
  const yarnHome = path.join(work, 'yarn-cli');
  mkdirSync(yarnHome);
  const yarnTarball = run('npm', ['pack', '@yarnpkg/cli-dist@4', '--silent'], yarnHome).trim().split('\n').pop();
  run('tar', ['-xzf', yarnTarball, '-C', yarnHome], yarnHome);
  const yarn = (args, cwd) =>
    run('node', [path.join(yarnHome, 'package/bin/yarn.js'), ...args], cwd, {
      YARN_NPM_REGISTRY_SERVER: registry,
      YARN_ENABLE_TELEMETRY: '0',
      YARN_ENABLE_PROGRESS_BARS: '0',
    });
  const yarnDir = path.join(work, 'consumer-esm-yarn');
  cpSync(path.join(HERE, 'consumer-esm'), yarnDir, { recursive: true });
  writeFileSync(
    path.join(yarnDir, 'package.json'),
    JSON.stringify(tarballManifest('consumer-esm-yarn', allTarballs, direct, 'yarn'), null, 2),
  );
  writeFileSync(path.join(yarnDir, 'tsconfig.json'), TSCONFIG);
  writeFileSync(path.join(yarnDir, 'yarn.lock'), '');
  // yarn installs no peer dependency on its own: the meter's @opentelemetry/api is the app's to add, as its README says.
  yarn(['add', ...deps, '@opentelemetry/api'], yarnDir);
  yarn(['tsc', '-p', '.'], yarnDir);
  process.stdout.write(yarn(['node', 'out/app.js'], yarnDir));
}

/** API keys and rate limits only: none of the heavy or optional integrations may come with them. */
function commonJs(tarballs) {
  const dir = freshApp('consumer-cjs', {}, tarballs, ['express@4', 'openai']);
  const heavy = ['gpt-tokenizer', 'pg', 'pino', 'prom-client', 'redis', '@redis/client', '@tollgate/redis'].filter(
    (name) => existsSync(path.join(dir, 'node_modules', name)),
  );
  if (heavy.length > 0) throw new Error(`API keys + rate limits installed ${heavy.join(', ')}`);
  for (const express of ['4', '5']) {
    if (express === '5') npm(['install', 'express@5'], dir);
    process.stdout.write(run('node', ['app.cjs'], dir));
  }
}

/** examples/proxy copied out as its README says, installed from the tarballs, started, serving a request. */
async function copiedProxy(allTarballs) {
  const dir = path.join(work, 'proxy');
  cpSync(path.join(ROOT, 'examples/proxy'), dir, {
    recursive: true,
    filter: (source) => !/[/\\](node_modules|test)$/.test(source),
  });
  // The tarballs stand in for the registry; npm install then fetches everything else the package.json lists.
  npm(['install', ...allTarballs], dir);
  const help = run('npm', ['run', '--silent', 'tollgate', '--', 'keys', '--help'], dir);
  if (!/keys/.test(help)) throw new Error(`tollgate keys --help printed:\n${help}`);
  await serveOnce(dir, ['start'], 'npm start');
  // Compiled, as a deployment runs it: npm run build, then npm run serve (node dist/main.js).
  rmSync(path.join(dir, 'dist'), { recursive: true, force: true });
  run('npm', ['run', '--silent', 'build'], dir);
  await serveOnce(dir, ['run', 'serve'], 'npm run serve');
}

/**
 * What an app with @tollgate/gateway and express may hold in node_modules: issue 44's target. 176 MB before the
 * optional peers, 85.9 MB after, 74.6 MB once only dist is published and @redis/client and no @types come along
 * (30 MB of it gpt-tokenizer); 47.7 MB once @tollgate/providers' own token tables (2.3 MB) replaced it (issue 47).
 */
const GATEWAY_APP_MAX_KB = 80 * 1024;
/** Features a deployment may not use: optional peers, installed only by those who configure them. */
const OPTIONAL_HEAVY = ['@electric-sql/pglite', 'stripe', '@opentelemetry/sdk-trace-base', '@tollgate/mcp'];
/**
 * Never needed at run time: node-redis's module bundle (we use @redis/client alone), type packages, and gpt-tokenizer
 * (our tests' oracle: @tollgate/providers counts tokens with its own tables).
 */
const NOT_AT_RUN_TIME = ['redis', '@redis/search', '@types', 'gpt-tokenizer'];
/** Counts "hello world" in both encodings with the installed @tollgate/providers. */
const COUNT_TOKENS = `
import { countTextTokens, preloadTokenizers } from '@tollgate/providers';
import { CountBudget } from '@tollgate/providers/count-budget';
await preloadTokenizers();
const count = (encoding) => countTextTokens('hello world', encoding, new CountBudget(1000));
console.log(count('o200k_base'), count('cl100k_base'));
`;

/**
 * @tollgate/gateway installed from the tarballs into a fresh app with Express `major`, as npm users get it: no
 * --legacy-peer-deps, --engine-strict (every package supports the Node we declare and run), none of the optional heavy
 * peers, and node_modules under GATEWAY_APP_MAX_KB. Then `createGateway(config)` mounted in its own Express app and
 * driven by the official openai client, and `tollgate-gateway` from the installed package on `--config` and, with
 * PGlite added (its embedded ledger), on its demo default.
 */
async function installedGateway(allTarballs, major) {
  // The gateway's own dependencies among the tarballs: not the CLI, not the MCP package (an optional peer).
  const lean = [...allTarballs].filter(([name]) => !['@tollgate/cli', '@tollgate/mcp'].includes(name));
  const folder = `gateway-app-express${major}`;
  const dir = freshApp(
    'gateway-app',
    { type: 'module' },
    lean.map(([, file]) => file),
    [`express@${major}`, '--engine-strict'],
    folder,
  );
  const express = JSON.parse(readFileSync(path.join(dir, 'node_modules/express/package.json'), 'utf8'));
  if (!express.version.startsWith(`${major}.`)) throw new Error(`${folder} has express ${express.version}`);
  const heavy = OPTIONAL_HEAVY.filter((name) => existsSync(path.join(dir, 'node_modules', name)));
  if (heavy.length > 0) throw new Error(`@tollgate/gateway + express installed ${heavy.join(', ')}`);
  const unneeded = NOT_AT_RUN_TIME.filter((name) => existsSync(path.join(dir, 'node_modules', name)));
  if (unneeded.length > 0) throw new Error(`@tollgate/gateway + express installed ${unneeded.join(', ')}`);
  const sizeKb = Number(run('du', ['-sk', 'node_modules'], dir).split(/\s/)[0]);
  console.log(`@tollgate/gateway + express@${express.version}: node_modules ${(sizeKb / 1024).toFixed(1)} MB`);
  if (!(sizeKb <= GATEWAY_APP_MAX_KB))
    throw new Error(`@tollgate/gateway + express: ${sizeKb} kB of node_modules, over ${GATEWAY_APP_MAX_KB} kB`);
  // The token tables came with the package: counts are exact, not the byte bound ("hello world" is 11 bytes).
  const counted = run('node', ['--input-type=module', '-e', COUNT_TOKENS], dir).trim();
  if (counted !== '2 2') throw new Error(`@tollgate/providers counted "hello world" as ${counted} tokens, not "2 2"`);
  npm(['install', 'openai', '--engine-strict'], dir);
  process.stdout.write(run('node', ['app.mjs'], dir));
  const { generateApiKey, hashApiKey } = await import('@tollgate/auth');
  const key = generateApiKey();
  const config = {
    upstreams: { mock: { kind: 'mock' } },
    tiers: { free: { requestsPerMinute: 60, models: ['gpt-4o-mini'] } },
    tenants: { acme: { tier: 'free' } },
    keys: [{ id: 'packed', sha256: hashApiKey(key), tenant: 'acme' }],
  };
  writeFileSync(path.join(dir, 'tollgate.json'), JSON.stringify(config));
  await serveOnce(
    dir,
    ['exec', '--', 'tollgate-gateway', '--config', 'tollgate.json', '--port', '0'],
    `tollgate-gateway --config, express ${major}`,
    key,
  );
  // `npx tollgate-gateway` after `npm i @tollgate/gateway` alone: the demo runs without PGlite, and says so.
  const withoutPglite = await serveOnce(
    dir,
    ['exec', '--', 'tollgate-gateway', '--port', '0'],
    `tollgate-gateway demo without PGlite, express ${major}`,
  );
  if (!withoutPglite.includes('ledger: none, usage records are not kept (@electric-sql/pglite is not installed)'))
    throw new Error(`the demo without PGlite did not say its usage is not kept:\n${withoutPglite}`);
  // With PGlite installed, the demo keeps its usage ledger in it.
  npm(['install', '@electric-sql/pglite', '--engine-strict'], dir);
  const full = await serveOnce(
    dir,
    ['exec', '--', 'tollgate-gateway', '--port', '0'],
    `tollgate-gateway demo, express ${major}`,
  );
  if (!full.includes('ledger: embedded PGlite in memory'))
    throw new Error(`the demo with PGlite did not name its ledger:\n${full}`);
}

/**
 * Starts the copied proxy (or the installed gateway) with `npm <args>`, asks it one chat completion with `key`, or
 * the demo key it prints, and stops it; returns what it printed.
 */
async function serveOnce(dir, args, label, givenKey) {
  const child = spawn('npm', args, {
    cwd: dir,
    env: { ...process.env, PORT: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let output = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  try {
    const url = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${label} did not start:\n${output}`)), 60_000);
      child.stdout.on('data', () => {
        const match = /listening on (http:\/\/localhost:\d+)/.exec(output);
        if (match) {
          clearTimeout(timer);
          resolve(match[1].replace('localhost', '127.0.0.1'));
        }
      });
      child.once('exit', (code) => reject(new Error(`${label} exited with ${code}:\n${output}`)));
    });
    const key = givenKey ?? /Bearer (\S+)"/.exec(output)?.[1];
    if (!key) throw new Error(`no demo key in the output:\n${output}`);
    const response = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 16, messages: [{ role: 'user', content: 'ping' }] }),
    });
    const body = await response.json();
    if (response.status !== 200 || !body.choices?.[0]?.message)
      throw new Error(`${label} answered ${response.status}: ${JSON.stringify(body)}`);
    console.log(`served ok (${label}): ${response.status}, ${body.usage?.total_tokens} tokens`);
    return output;
  } finally {
    // npm start runs node in a child: signal the whole group.
    try {
      process.kill(-child.pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
}

try {
  const tarballs = packAll();
  for (const [name, file] of tarballs) checkTarball(name, file);
  console.log(`${tarballs.size} tarballs checked`);
  const byName = (...names) => names.map((name) => tarballs.get(name));
  const apiPackages = [
    '@tollgate/core',
    '@tollgate/auth',
    '@tollgate/ratelimit',
    '@tollgate/providers',
    '@tollgate/metering',
    '@tollgate/budget',
  ];
  esmTypeScript(byName(...apiPackages));
  otherPackageManagers(tarballs, apiPackages);
  commonJs(byName('@tollgate/core', '@tollgate/auth', '@tollgate/ratelimit', '@tollgate/providers'));
  await copiedProxy([...tarballs.values()]);
  for (const major of ['4', '5']) await installedGateway(tarballs, major);
  console.log('packed install: all ok');
} finally {
  if (!keep) rmSync(work, { recursive: true, force: true });
}
