// The server process sets V8 as v8-flags.ts says: a process that calls it takes no pretenuring decision at all and its
// memory reducer collects without compacting the whole heap; one that does not pretenures a site whose objects outlive
// scavenges and has its memory reducer compact; a flag the command line gives either way is left as it is.
import { describe, expect, it } from '@jest/globals';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath, pathToFileURL } from 'node:url';
import ts from 'typescript';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/**
 * A process that (when `call`) runs applyServerV8Flags, then keeps a million objects from one allocation site alive
 * across many scavenges, with V8 printing each pretenuring decision it takes. V8 tenures a site only at a scavenge of a
 * young generation grown to its most: a semi-space of 1 MB gets there at once.
 */
async function run(
  call: boolean,
  flags: string[] = [],
): Promise<{ stdout: string; stderr: string; returned?: string }> {
  return runScript(
    `
    import { applyServerV8Flags } from './packages/gateway/src/v8-flags.ts';
    if (${call}) console.log('returned ' + applyServerV8Flags().join(' '));
    ${KEEP_A_MILLION}
  `,
    flags,
  );
}

/** Keeps a million objects from one allocation site alive across many scavenges. */
const KEEP_A_MILLION = `
    const kept = [];
    const make = (i) => ({ i, pair: [i, i + 1] });
    for (let i = 0; i < 1e6; i++) kept.push(make(i));
    console.log('kept ' + kept.length);
`;

async function runScript(
  script: string,
  flags: string[] = [],
  node = process.execPath,
): Promise<{ stdout: string; stderr: string; returned?: string }> {
  const { stdout, stderr } = await promisify(execFile)(
    node,
    [...flags, ...(node === process.execPath ? ['--import', 'tsx'] : []), '--input-type=module', '-e', script],
    // The gateway's demo reads no config file and keeps nothing on disk; port 0 is any free one.
    {
      cwd: root,
      maxBuffer: 16 * 1024 * 1024,
      env: { ...process.env, TOLLGATE_CONFIG: '', TOLLGATE_DATA_DIR: '', PORT: '0', REDIS_URL: '' },
    },
  );
  const returned = /returned (.*)/.exec(stdout)?.[1];
  return { stdout, stderr, ...(returned !== undefined ? { returned } : {}) };
}

const decisions = (stdout: string) => stdout.split('\n').filter((line) => line.includes('pretenuring:')).length;
const tenured = (stdout: string) => stdout.split('\n').filter((line) => /=> tenure\b/.test(line)).length;

/** What `run` gives V8 to print its pretenuring decisions: a semi-space of 1 MB gets a site tenured at once. */
const PRETENURING = ['--max-semi-space-size=1', '--trace-pretenuring-statistics'];

describe('applyServerV8Flags: pretenuring', () => {
  it('V8 left as it is pretenures a site whose objects outlive scavenges', async () => {
    const { stdout } = await run(false, PRETENURING);
    expect(stdout).toContain('kept ');
    expect(tenured(stdout)).toBeGreaterThan(0);
  }, 60_000);

  it('turned off, V8 takes no pretenuring decision', async () => {
    const { stdout, returned } = await run(true, PRETENURING);
    expect(returned?.split(' ')).toContain('--no-allocation-site-pretenuring');
    expect(stdout).toContain('kept ');
    expect(decisions(stdout)).toBe(0);
  }, 60_000);

  it('a command line that names the flag either way keeps it', async () => {
    const kept = await run(true, [...PRETENURING, '--allocation-site-pretenuring']);
    expect(kept.returned).not.toContain('pretenuring');
    expect(tenured(kept.stdout)).toBeGreaterThan(0);
    const off = await run(true, [...PRETENURING, '--no-allocation_site_pretenuring']);
    expect(off.returned).not.toContain('pretenuring');
    expect(decisions(off.stdout)).toBe(0);
  }, 60_000);

  it('serveGateway turns it off before it serves: the gateway as the bin and the example proxy run it', async () => {
    const { stdout } = await runScript(
      `
      import { serveGateway } from './packages/gateway/src/serve.ts';
      await serveGateway(process.env);
      console.log('served');
      ${KEEP_A_MILLION}
      process.exit(0);
    `,
      PRETENURING,
    );
    const afterServing = stdout.slice(stdout.indexOf('served'));
    expect(afterServing).toContain('kept ');
    expect(decisions(afterServing)).toBe(0);
  }, 60_000);
});

/** The node binary of a release line (test/setup/node-release.sh fetches it from npm once). */
const nodeOf = (major: string) =>
  path.join(
    execFileSync('bash', [path.join(root, 'test/setup/node-release.sh'), major], { encoding: 'utf8' }).trim(),
    'node',
  );

/** v8-flags.ts as JavaScript, for a Node release run without tsx (made once). */
const compiledFlags = (() => {
  let file: string | undefined;
  return () => {
    if (file) return file;
    const source = readFileSync(path.join(root, 'packages/gateway/src/v8-flags.ts'), 'utf8');
    const { outputText } = ts.transpileModule(source, {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    });
    file = path.join(mkdtempSync(path.join(tmpdir(), 'tollgate-v8-flags-')), 'v8-flags.mjs');
    writeFileSync(file, outputText);
    return file;
  };
})();

/** What applyServerV8Flags sets on a Node release, and what the process printed on stderr. */
async function flagsSetOn(major: string, flags: string[] = []): Promise<{ returned?: string; stderr: string }> {
  const { returned, stderr } = await runScript(
    `
    import { applyServerV8Flags } from ${JSON.stringify(pathToFileURL(compiledFlags()).href)};
    console.log('returned ' + applyServerV8Flags().join(' '));
  `,
    flags,
    nodeOf(major),
  );
  return { returned, stderr };
}

// What the flag does under load (the memory reducer's compaction after a burst, 25-50 ms with 100,000 abuse subjects
// held, gone with it) is measured by bench/guard-stall.ts: V8 starts its reducer by allocation-rate heuristics no
// test here can hold it to.
describe('applyServerV8Flags: the memory reducer', () => {
  it('on Node 24 it is set, unless the command line names it', async () => {
    const set = await flagsSetOn('24');
    expect(set).toEqual({
      returned: '--no-allocation-site-pretenuring --no-memory-reducer-favors-memory --heap-growing-percent=50',
      stderr: '',
    });
    const named = await flagsSetOn('24', ['--memory-reducer-favors-memory']);
    expect(named).toEqual({ returned: '--no-allocation-site-pretenuring --heap-growing-percent=50', stderr: '' });
  }, 60_000);

  it('on Node 22, whose V8 has no such flag, it is not set (and V8 prints nothing of it)', async () => {
    expect(await flagsSetOn('22')).toEqual({
      returned: '--no-allocation-site-pretenuring --heap-growing-percent=50',
      stderr: '',
    });
  }, 60_000);
});

// What the growth does under load (RSS over a run follows what is held, not a sawtooth up to 4x it) is measured by
// bench/scale.ts and bench/deployment-memory.ts: V8 sizes each step by heuristics no test here can hold it to.
describe('applyServerV8Flags: the old generation grown by half', () => {
  it('is set on every Node line CI runs, unless the command line names it, with or without a value', async () => {
    for (const major of ['22', '24']) expect((await flagsSetOn(major)).returned).toContain('--heap-growing-percent=50');
    const named = await flagsSetOn('24', ['--heap-growing-percent=20']);
    expect(named).toEqual({
      returned: '--no-allocation-site-pretenuring --no-memory-reducer-favors-memory',
      stderr: '',
    });
    const { stdout } = await runScript(
      `
      import { applyServerV8Flags } from './packages/gateway/src/v8-flags.ts';
      console.log('returned ' + applyServerV8Flags().join(' '));
    `,
      ['--heap_growing_percent=0'],
    );
    expect(stdout).not.toContain('heap-growing');
  }, 60_000);
});

describe('SERVER_NODE_ARGS: the young generation the gateway is started with', () => {
  /** The most the new space grew to while three million objects were kept (MiB), started with `flags`. */
  async function newSpaceMiB(major: string, flags: readonly string[]): Promise<number> {
    const { stdout } = await runScript(
      `
      import { getHeapSpaceStatistics } from 'node:v8';
      const kept = [];
      let most = 0;
      for (let i = 0; i < 3e6; i++) {
        kept.push({ i, text: 'x' + i });
        if (i % 1000 === 0)
          most = Math.max(most, getHeapSpaceStatistics().find((space) => space.space_name === 'new_space').space_size);
      }
      console.log('most ' + most / 1048576 + ' kept ' + kept.length);
    `,
      [...flags],
      nodeOf(major),
    );
    return Number(/most ([\d.]+)/.exec(stdout)![1]);
  }

  it('bounds it on every Node line CI runs, where V8 left alone grows it further (to 128 MiB on Node 24)', async () => {
    const { SERVER_NODE_ARGS } = await import('../src/v8-flags.js');
    const grown: Record<string, number> = {};
    for (const major of ['22', '24']) {
      const bounded = await newSpaceMiB(major, SERVER_NODE_ARGS);
      expect(bounded).toBeLessThanOrEqual(24);
      grown[major] = await newSpaceMiB(major, []);
      expect(grown[major]).toBeGreaterThanOrEqual(2 * bounded - 12);
    }
    expect(grown['24']).toBeGreaterThanOrEqual(64);
  }, 120_000);
});
