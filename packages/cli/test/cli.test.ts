// `tollgate <command>`: one dispatcher over keys, report and reconcile, with "did you mean" and exit codes 0, 1 and 2.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import { runCli } from '../src/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'tollgate-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function cli(argv: string[], env: NodeJS.ProcessEnv = {}) {
  const out = { stdout: '', stderr: '' };
  const code = await runCli(
    argv,
    {
      stdout: { write: (text: string) => (out.stdout += text) },
      stderr: { write: (text: string) => (out.stderr += text) },
    },
    env,
  );
  return { code, ...out };
}

function configFile(text: string): string {
  const path = join(dir, `${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(path, text);
  return path;
}

describe('tollgate', () => {
  it('prints its commands on --help (0), and on nothing to stderr (2)', async () => {
    const help = await cli(['--help']);
    expect(help).toMatchObject({ code: 0, stderr: '' });
    expect(help.stdout).toMatch(/^Usage: tollgate <command>/);
    for (const command of ['keys', 'report', 'reconcile']) expect(help.stdout).toContain(`  ${command} `);
    const none = await cli([]);
    expect(none).toMatchObject({ code: 2, stdout: '' });
    expect(none.stderr).toMatch(/^Usage: tollgate <command>/);
  });

  it('names a mistyped command, subcommand or flag with the closest one, and exits 2', async () => {
    const command = await cli(['reprot']);
    expect(command).toMatchObject({ code: 2, stdout: '' });
    expect(command.stderr).toBe(
      'tollgate: unknown command "reprot"; did you mean "report"?\nRun "tollgate --help" for its usage.\n',
    );
    const subcommand = await cli(['keys', 'rotat', 'k1']);
    expect(subcommand.code).toBe(2);
    expect(subcommand.stderr).toContain('tollgate keys: unknown command "rotat"; did you mean "rotate"?');
    const flag = await cli(['report', '--sinse', '7d']);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toContain('tollgate report: unknown option --sinse; did you mean "--since"?');
    const grouping = await cli(['report', '--by', 'planet', '--postgres', 'postgres://127.0.0.1/test']);
    expect(grouping.code).toBe(2);
    expect(grouping.stderr).toContain('--by must be one of tenant, feature, model, day, key, user');
  });

  it('reconcile: a missing config or ledger is a usage error (2); a config that is not JSON fails (1) at its line', async () => {
    const missing = await cli(['reconcile']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('reconcile needs TOLLGATE_CONFIG');
    const noLedger = await cli(['reconcile'], {
      TOLLGATE_CONFIG: configFile(JSON.stringify({ upstreams: { mock: { kind: 'mock' } } })),
    });
    expect(noLedger.code).toBe(2);
    expect(noLedger.stderr).toContain('reconcile needs a PostgreSQL ledger (postgresUrl) and Redis');
    const format = await cli(['reconcile', '--format', 'xml']);
    expect(format.code).toBe(2);
    expect(format.stderr).toContain('--format must be one of table, csv, json; got "xml"');
    const broken = await cli(['reconcile'], { TOLLGATE_CONFIG: configFile('{\n  "port": 8787,\n  "tiers": }\n') });
    expect(broken.code).toBe(1);
    expect(broken.stderr).toMatch(/is not valid JSON at line 3, column 12: /);
  });

  it('report reads the ledger the config names, and reports a config with problems, all of them', async () => {
    const path = configFile(
      JSON.stringify({ upstreams: { mock: { kind: 'mock' } }, port: -1, tiers: { free: { requestsPerMinute: 0 } } }),
    );
    const out = await cli(['report'], { TOLLGATE_CONFIG: path });
    expect(out.code).toBe(1);
    expect(out.stderr).toContain('2 problems:');
    expect(out.stderr).toContain('  - port must be an integer from 0 to 65535');
    expect(out.stderr).toContain('  - tiers.free.requestsPerMinute must be a positive integer');
    // Help is not held up by the config.
    expect((await cli(['report', '--help'], { TOLLGATE_CONFIG: path })).code).toBe(0);
  });
});
