// What CI can run of deploy/ without a container: promtool checks the compose stack's Prometheus config, and the
// Dockerfile's own steps run here (the build, pnpm deploy of the image's app from the lockfile) before the deployed
// gateway starts, on the Node release the recipe's base image names, as its non-root user with its ENV and ENTRYPOINT
// and the HEALTHCHECK passes; it exports traces with the OTEL_* variables set; then the same app serves
// deploy/tollgate.json with the compose file's environment on a real Redis and PostgreSQL.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import pg from 'pg';
import { parse as parseYaml } from 'yaml';
import { readRecipe } from './helpers/dockerfile.js';
import { startOtlpCollector } from './helpers/otlp-collector.js';
import { deleteRedisPrefix, REDIS_URL, waitFor } from './helpers/proxy.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DEPLOY = path.join(ROOT, 'deploy');
const POSTGRES_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const recipe = readRecipe(readFileSync(path.join(DEPLOY, 'Dockerfile'), 'utf8'));
/**
 * RUN steps that prepare the build container's own tools and dependencies: this checkout has them already (pnpm on the
 * PATH, `pnpm install --frozen-lockfile` run before the tests), and a second install under a running test suite would
 * change node_modules beneath it.
 */
const PREPARED_HERE = [/^npm install -g pnpm@[\d.]+ /, /^pnpm install --frozen-lockfile$/];

/**
 * How long the deployed gateway may take to listen: the demo's first start makes its PGlite ledger (seconds on a quiet
 * machine; 113 s on Node 20 and 24 alike with the load average at 22 on two cores).
 */
const START_MS = 240_000;
// Each test that starts it: the start and a minute more.
jest.setTimeout(START_MS + 60_000);

/** The Node major line of the run stage's base image (`node:24-bookworm-slim`: 24). */
function imageNodeMajor(): string {
  const major = /^node:(\d+)\b/.exec(recipe.stages.at(-1)!.base)?.[1];
  if (!major) throw new Error(`the run stage's base ${recipe.stages.at(-1)!.base} names no Node major`);
  return major;
}

interface LockFile {
  packages: Record<string, unknown>;
}
interface Manifest {
  peerDependencies: Record<string, string>;
}

/** Runs promtool in `cwd`; when it is missing, says how to get it (test/setup/machine.sh installs it). */
function promtool(args: string[], cwd: string) {
  const run = spawnSync('promtool', args, { cwd, encoding: 'utf8' });
  if (run.error) throw new Error(`promtool: ${run.error.message} (apt-get install prometheus)`);
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

describe('deploy/prometheus/prometheus.yml', () => {
  it('promtool check config accepts it, the rule files it names and the credentials file compose mounts', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-deploy-prometheus-'));
    try {
      const text = readFileSync(path.join(DEPLOY, 'prometheus/prometheus.yml'), 'utf8');
      const config = parseYaml(text) as { scrape_configs: { authorization: { credentials_file: string } }[] };
      const secret = config.scrape_configs[0]!.authorization.credentials_file;
      // The secret compose mounts at /run/secrets/admin_key, here a file of the test's own at that name's place.
      writeFileSync(path.join(dir, 'admin_key'), 'not-the-real-key\n');
      writeFileSync(path.join(dir, 'prometheus.yml'), text.replaceAll(secret, path.join(dir, 'admin_key')));
      writeFileSync(path.join(dir, 'alerts.yml'), readFileSync(path.join(DEPLOY, 'prometheus/alerts.yml')));
      const { status, output } = promtool(['check', 'config', 'prometheus.yml'], dir);
      expect(output).toMatch(/SUCCESS: prometheus\.yml is valid prometheus config file syntax/);
      expect(output).toMatch(/SUCCESS: \d+ rules found/);
      expect(status).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** A port nothing listens on now. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe("deploy/Dockerfile's steps, run outside a container", () => {
  const work = mkdtempSync(path.join(tmpdir(), 'tollgate-deploy-recipe-'));
  // The container's absolute paths, each a directory of the test's own.
  const places: Record<string, string> = {
    '/app': path.join(work, 'app'),
    [recipe.env.TOLLGATE_DATA_DIR!]: path.join(work, 'data'),
  };
  const here = (command: string) =>
    Object.entries(places).reduce((text, [inImage, local]) => text.replaceAll(inImage, local), command);
  const [uid, gid] = recipe.user.split(':');
  const children: ChildProcess[] = [];
  const redisPrefix = `tollgate-deploy-${randomBytes(4).toString('hex')}:`;
  const postgresSchema = `deploy_${randomBytes(4).toString('hex')}`;
  /** The bin folder of the Node release the image runs (test/setup/node-release.sh fetches it from npm once). */
  let imageNode = '';
  /** The image's PATH here: its Node first. */
  const imagePath = () => `${imageNode}:/usr/bin:/bin`;

  /** Runs one RUN step with bash, as the build does, in `cwd`, with the image's Node first on the PATH. */
  function runStep(command: string, cwd: string) {
    execFileSync('bash', ['-c', here(command)], {
      cwd,
      env: { ...process.env, PATH: `${imageNode}:${process.env.PATH}` },
      stdio: ['ignore', 'ignore', 'pipe'],
      encoding: 'utf8',
    });
  }

  /** The recipe's ENTRYPOINT as its USER (setpriv: the image's uid and gid, no user entry needed), with `env` only. */
  function startAsImageUser(env: Record<string, string>, args: string[] = []) {
    const [program, ...rest] = recipe.entrypoint.map(here);
    const child = spawn(
      'setpriv',
      [`--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', '--', program!, ...rest, ...args],
      { cwd: here(recipe.stages.at(-1)!.workdir!), env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    children.push(child);
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const listening = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the gateway did not start:\n${output}`)), START_MS);
      child.stdout!.on('data', () => {
        if (/listening on http/.test(output)) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code) => reject(new Error(`the gateway exited with ${code}:\n${output}`)));
    });
    /** SIGTERM, as `docker stop` and the kubelet send it: the gateway closes and exits by itself. */
    const stop = async () => {
      const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
      child.kill('SIGTERM');
      return exited;
    };
    return { child, listening, output: () => output, stop };
  }

  /** The image's environment: its ENV lines with this machine's paths, a free port, the image's node on the PATH. */
  async function imageEnv(): Promise<Record<string, string> & { PORT: string }> {
    const env = Object.fromEntries(Object.entries(recipe.env).map(([name, value]) => [name, here(value)]));
    return {
      ...env,
      PORT: String(await freePort()),
      PATH: imagePath(),
      HOME: places[recipe.env.TOLLGATE_DATA_DIR!]!,
    };
  }

  beforeAll(() => {
    imageNode = execFileSync('bash', [path.join(ROOT, 'test/setup/node-release.sh'), imageNodeMajor()], {
      encoding: 'utf8',
    }).trim();
    // Every stage's RUN steps in order: the build stage in this checkout, the others in their WORKDIR's place here.
    for (const stage of recipe.stages) {
      const cwd = stage.workdir === '/src' ? ROOT : here(stage.workdir ?? '/');
      mkdirSync(cwd, { recursive: true });
      for (const command of stage.runs) {
        if (PREPARED_HERE.some((pattern) => pattern.test(command))) continue;
        runStep(command, cwd);
      }
    }
    // mkdtemp made the work folder for root alone; the image's user must reach /app as in the image.
    chmodSync(work, 0o755);
  }, 900_000);

  // Removing an installed app's node_modules takes a while on a busy machine.
  afterAll(async () => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(work, { recursive: true, force: true });
    await deleteRedisPrefix(redisPrefix);
    const pool = new pg.Pool({ connectionString: POSTGRES_URL });
    await pool.query(`DROP SCHEMA IF EXISTS "${postgresSchema}" CASCADE`);
    await pool.end();
  }, 120_000);

  it("deploys the lockfile's packages only: production dependencies, every peer the gateway can use, our dist", () => {
    const modules = path.join(places['/app']!, 'node_modules');
    expect(existsSync(path.join(modules, '@tollgate/gateway/dist/bin.js'))).toBe(true);
    // Each package of the app is one the workspace's lockfile pins, at that version.
    const locked = new Set(
      Object.keys((parseYaml(readFileSync(path.join(ROOT, 'pnpm-lock.yaml'), 'utf8')) as LockFile).packages),
    );
    const deployed = readdirSync(path.join(modules, '.pnpm'))
      .map((entry) => /^(@[^+]+\+[^@]+|[^@]+)@([^_]+)/.exec(entry))
      .filter((match) => match !== null)
      .map((match) => ({ name: match[1]!.replace('+', '/'), version: match[2]! }));
    const ours = deployed.filter(({ name }) => name.startsWith('@tollgate/'));
    const theirs = deployed.filter(({ name }) => !name.startsWith('@tollgate/'));
    expect(theirs.length).toBeGreaterThan(100);
    expect(theirs.filter(({ name, version }) => !locked.has(`${name}@${version}`))).toEqual([]);
    for (const dev of ['typescript', 'jest', 'tsx', '@swc/core', 'prettier', 'eslint'])
      expect([dev, deployed.some(({ name }) => name === dev)]).toEqual([dev, false]);
    // The gateway's peers (its optional ones too: the demo's PGlite, tracing's SDK, MCP, Stripe) beside it.
    const peers = Object.keys(
      (JSON.parse(readFileSync(path.join(ROOT, 'packages/gateway/package.json'), 'utf8')) as Manifest).peerDependencies,
    ).filter((name) => !name.startsWith('@types/'));
    expect(peers.filter((name) => !existsSync(path.join(modules, name, 'package.json')))).toEqual([]);
    // Our packages as published: dist, no TypeScript source.
    expect(ours.length).toBeGreaterThan(10);
    const sources = readdirSync(path.join(modules, '.pnpm'))
      .filter((entry) => entry.startsWith('@tollgate+'))
      .flatMap((entry) =>
        readdirSync(path.join(modules, '.pnpm', entry, 'node_modules/@tollgate'), {
          recursive: true,
          encoding: 'utf8',
        }),
      )
      .filter((file) => file.endsWith('.ts') && !file.endsWith('.d.ts'));
    expect(sources).toEqual([]);
  });

  it('starts as the image user with the recipe ENV, keeps its data as that user, passes the HEALTHCHECK', async () => {
    const env = await imageEnv();
    const gateway = startAsImageUser(env);
    await gateway.listening;
    const status = readFileSync(`/proc/${gateway.child.pid}/status`, 'utf8');
    expect(status).toMatch(new RegExp(`^Uid:\\s+${uid}\\s+${uid}\\s`, 'm'));
    const health = await fetch(`http://127.0.0.1:${env.PORT}/healthz`);
    expect(health.status).toBe(200);
    // The HEALTHCHECK's own command, as the image's user with the image's environment.
    const [program, ...args] = recipe.healthcheck;
    const check = spawnSync('setpriv', [`--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', program!, ...args], {
      env,
      encoding: 'utf8',
    });
    expect([check.status, check.stderr]).toEqual([0, '']);
    // The embedded default keeps its keys and ledger in TOLLGATE_DATA_DIR, as the image's user.
    const data = places[recipe.env.TOLLGATE_DATA_DIR!]!;
    expect(readdirSync(data).length).toBeGreaterThan(0);
    expect(readdirSync(data).every((entry) => statSync(path.join(data, entry)).uid === Number(uid))).toBe(true);
    expect(await gateway.stop()).toEqual([0, null]);
  });

  it('exports each call as a span with the OTEL_* variables set: the image carries the SDK tracing loads', async () => {
    const collector = await startOtlpCollector();
    const env = {
      ...(await imageEnv()),
      // Its own data dir: the first gateway may still be stopping.
      TOLLGATE_DATA_DIR: path.join(work, 'data-otel'),
      OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
      OTEL_SERVICE_NAME: 'tollgate-image',
      OTEL_BSP_SCHEDULE_DELAY: '100',
    };
    mkdirSync(env.TOLLGATE_DATA_DIR);
    execFileSync('chown', [`${uid}:${gid}`, env.TOLLGATE_DATA_DIR]);
    try {
      const gateway = startAsImageUser(env);
      await gateway.listening;
      const key = /demo-pro\s+tier pro\s+(tgk_\w+)/.exec(gateway.output())?.[1];
      expect(key).toBeDefined();
      const response = await fetch(`http://127.0.0.1:${env.PORT}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
        body: JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 8, messages: [{ role: 'user', content: 'Hello!' }] }),
      });
      expect(response.status).toBe(200);
      await response.arrayBuffer();
      await waitFor(
        () =>
          collector.exports.some(
            (sent) => sent.path === '/v1/traces' && sent.body.includes('gen_ai.usage.output_tokens'),
          ) || undefined,
        'the span of the call at the collector',
      );
      expect(Buffer.concat(collector.exports.map((sent) => sent.body)).includes('tollgate-image')).toBe(true);
      expect(await gateway.stop()).toEqual([0, null]);
    } finally {
      await collector.close();
    }
  });

  it('serves deploy/tollgate.json with the compose environment, on Redis and PostgreSQL', async () => {
    const compose = parseYaml(readFileSync(path.join(DEPLOY, 'compose.yaml'), 'utf8')) as {
      services: { gateway: { environment: Record<string, string> } };
    };
    const adminKey = randomBytes(24).toString('hex');
    const config = JSON.parse(readFileSync(path.join(DEPLOY, 'tollgate.json'), 'utf8')) as {
      upstreams: Record<string, { baseUrl: string }>;
    };
    // The deployment's edits (docs/production.md: the admin key's hash) and this machine's stores, in a schema and a
    // Redis prefix of the test's own; the upstreams on a port of this machine where nothing listens (the health
    // checks probe them: no call leaves the machine).
    const nowhere = `http://127.0.0.1:${await freePort()}`;
    const upstreams = Object.fromEntries(
      Object.entries(config.upstreams).map(([name, settings]) => [
        name,
        { ...settings, baseUrl: settings.baseUrl.replace(/^https:\/\/[^/]+/, nowhere) },
      ]),
    );
    const configFile = path.join(work, 'tollgate.json');
    writeFileSync(
      configFile,
      JSON.stringify({
        ...config,
        upstreams,
        adminKeySha256: createHash('sha256').update(adminKey).digest('hex'),
        postgresUrl: POSTGRES_URL,
        postgresSchema,
        redisPrefix,
      }),
    );
    chmodSync(configFile, 0o644);
    // Compose's values with its ${VAR:?} placeholders filled in, the services' host names replaced by this machine's.
    const composeEnv = Object.fromEntries(
      Object.entries(compose.services.gateway.environment).map(([name, value]) => [
        name,
        value.startsWith('${') ? `test-${name.toLowerCase()}` : value,
      ]),
    );
    const image = await imageEnv();
    const env = {
      ...image,
      ...composeEnv,
      TOLLGATE_CONFIG: configFile,
      REDIS_URL,
      // Its own data dir: the first gateway may still be stopping.
      TOLLGATE_DATA_DIR: path.join(work, 'data-compose'),
    };
    mkdirSync(env.TOLLGATE_DATA_DIR);
    execFileSync('chown', [`${uid}:${gid}`, env.TOLLGATE_DATA_DIR]);
    const gateway = startAsImageUser(env);
    await gateway.listening;
    expect(gateway.output()).toContain('stores: Redis at redis://127.0.0.1:6379; ledger: PostgreSQL at');
    const health = await fetch(`http://127.0.0.1:${image.PORT}/healthz`);
    expect(health.status).toBe(200);
    const metrics = `http://127.0.0.1:${image.PORT}/metrics`;
    expect((await fetch(metrics)).status).toBe(401);
    const scrape = await fetch(metrics, { headers: { authorization: `Bearer ${adminKey}` } });
    expect(scrape.status).toBe(200);
    expect(await scrape.text()).toMatch(/^# TYPE tollgate_/m);
    expect(await gateway.stop()).toEqual([0, null]);
  });
});
