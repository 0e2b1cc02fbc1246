// Every door that takes a config runs the start's checks (shape, names, environment): createGateway, createGatewayApp,
// serveGateway (the `tollgate-gateway` bin) refuse the same config with one error listing every problem.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from '@jest/globals';
import { ConfigError, createGateway, createGatewayApp, validateConfig } from '../src/index.js';
import type { GatewayConfig } from '../src/index.js';
import { WITH_MOCK } from './helpers/mock-upstream.js';

const root = resolve(import.meta.dirname, '../../..');
const dir = mkdtempSync(join(tmpdir(), 'tollgate-doors-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A misspelt limit (it would silently not exist) and an upstream whose key variable is not set. */
const wrong = {
  tiers: { free: { requestsPerMinut: 5 } },
  upstreams: { openai: { baseUrl: 'https://api.openai.com/v1', apiKeyEnv: 'TG_DOORS_UNSET_KEY' } },
} as unknown as GatewayConfig;
const misspelt = 'tiers.free has no field "requestsPerMinut"; did you mean "requestsPerMinute"?';
const unset = 'upstreams.openai.apiKeyEnv names TG_DOORS_UNSET_KEY, which is not set';

function problemsOf(make: () => unknown): readonly string[] {
  try {
    make();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).issues;
  }
  throw new Error('the config was accepted');
}

describe('one validation, every door', () => {
  it.each([
    ['createGateway', (config: GatewayConfig) => createGateway(config, { env: {} })],
    ['createGatewayApp', (config: GatewayConfig) => createGatewayApp(config, { env: {} })],
  ])('%s throws one ConfigError naming the misspelt field and the unset apiKeyEnv', (_door, open) => {
    const problems = problemsOf(() => open(wrong));
    expect(problems).toHaveLength(2);
    expect(problems[0]).toContain(misspelt);
    expect(problems[1]).toContain(unset);
    // Each alone too.
    expect(problemsOf(() => open({ tiers: wrong.tiers } as GatewayConfig))[0]).toContain(misspelt);
    expect(problemsOf(() => open({ upstreams: wrong.upstreams } as GatewayConfig))[0]).toContain(unset);
  });

  it("a config validateConfig made is still checked against the gateway's environment", () => {
    const checked = validateConfig({ upstreams: wrong.upstreams });
    expect(problemsOf(() => createGateway(checked, { env: {} }))[0]).toContain(unset);
    // A key or a tier the config does not know, given to createGateway as an object, fails as at start.
    const unknownTier = {
      ...WITH_MOCK,
      keys: [{ id: 'k', sha256: 'a'.repeat(64), tier: 'platinum' }],
    } as unknown as GatewayConfig;
    expect(problemsOf(() => createGateway(unknownTier, { env: {} }))[0]).toContain(
      'keys[0].tier names an unknown tier "platinum"',
    );
  });

  it('tollgate-gateway --config refuses the same config at start with the same problems, exit 1', async () => {
    const file = join(dir, 'wrong.json');
    writeFileSync(file, JSON.stringify(wrong));
    const env = { ...process.env, TG_DOORS_UNSET_KEY: '', TOLLGATE_CONFIG: '', REDIS_URL: '', PORT: '0' };
    const ran = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', '--conditions=source', 'packages/gateway/src/bin.ts', '--config', file],
      { cwd: root, env },
    ).then(
      () => ({ code: 0, stderr: '' }),
      (error: { code: number; stderr: string }) => error,
    );
    expect(ran.code).toBe(1);
    expect(ran.stderr).toContain(misspelt);
    expect(ran.stderr).toContain(unset);
  }, 60_000);

  it('both commands print their version; `pnpm tollgate` runs without a build', async () => {
    const run = (command: string, args: string[]) =>
      promisify(execFile)(command, args, { cwd: root, env: { ...process.env, TOLLGATE_CONFIG: '' } });
    const versionOf = async (name: string) =>
      (
        JSON.parse((await import('node:fs')).readFileSync(join(root, `packages/${name}/package.json`), 'utf8')) as {
          version: string;
        }
      ).version;
    const bin = await run(process.execPath, [
      '--import',
      'tsx',
      '--conditions=source',
      'packages/gateway/src/bin.ts',
      '--version',
    ]);
    expect(bin.stdout).toBe(`tollgate-gateway ${await versionOf('gateway')}\n`);
    // The root script, as the README gives it (no dist needed).
    const script = (
      JSON.parse((await import('node:fs')).readFileSync(join(root, 'package.json'), 'utf8')) as {
        scripts: Record<string, string>;
      }
    ).scripts.tollgate!;
    expect(script).not.toContain('dist');
    const [node, ...args] = script.split(' ');
    expect(node).toBe('node');
    const cli = await run(process.execPath, [...args, '--version']);
    // `tollgate` is @tollgate/cli's command: its own version.
    expect(cli.stdout).toBe(`tollgate ${await versionOf('cli')}\n`);
  }, 60_000);
});
