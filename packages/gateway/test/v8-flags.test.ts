// The server process turns V8's allocation-site pretenuring off (see v8-flags.ts): a process that calls it takes no
// pretenuring decision at all, one that does not pretenures a site whose objects outlive scavenges, and a flag the
// command line gives either way is left as it is.
import { describe, expect, it } from '@jest/globals';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/**
 * A process that (when `call`) runs turnOffPretenuring, then keeps a million objects from one allocation site alive
 * across many scavenges, with V8 printing each pretenuring decision it takes. V8 tenures a site only at a scavenge of a
 * young generation grown to its most: a semi-space of 1 MB gets there at once.
 */
async function run(call: boolean, flags: string[] = []): Promise<{ stdout: string; returned?: boolean }> {
  return runScript(
    `
    import { turnOffPretenuring } from './packages/gateway/src/v8-flags.ts';
    if (${call}) console.log('returned ' + turnOffPretenuring());
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

async function runScript(script: string, flags: string[] = []): Promise<{ stdout: string; returned?: boolean }> {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [
      '--max-semi-space-size=1',
      '--trace-pretenuring-statistics',
      ...flags,
      '--import',
      'tsx',
      '--input-type=module',
      '-e',
      script,
    ],
    // The gateway's demo reads no config file and keeps nothing on disk; port 0 is any free one.
    {
      cwd: root,
      maxBuffer: 16 * 1024 * 1024,
      env: { ...process.env, TOLLGATE_CONFIG: '', TOLLGATE_DATA_DIR: '', PORT: '0', REDIS_URL: '' },
    },
  );
  const returned = /returned (true|false)/.exec(stdout)?.[1];
  return { stdout, ...(returned ? { returned: returned === 'true' } : {}) };
}

const decisions = (stdout: string) => stdout.split('\n').filter((line) => line.includes('pretenuring:')).length;
const tenured = (stdout: string) => stdout.split('\n').filter((line) => /=> tenure\b/.test(line)).length;

describe('turnOffPretenuring', () => {
  it('V8 left as it is pretenures a site whose objects outlive scavenges', async () => {
    const { stdout } = await run(false);
    expect(stdout).toContain('kept ');
    expect(tenured(stdout)).toBeGreaterThan(0);
  }, 60_000);

  it('turned off, V8 takes no pretenuring decision', async () => {
    const { stdout, returned } = await run(true);
    expect(returned).toBe(true);
    expect(stdout).toContain('kept ');
    expect(decisions(stdout)).toBe(0);
  }, 60_000);

  it('a command line that names the flag either way keeps it', async () => {
    const kept = await run(true, ['--allocation-site-pretenuring']);
    expect(kept.returned).toBe(false);
    expect(tenured(kept.stdout)).toBeGreaterThan(0);
    const off = await run(true, ['--no-allocation_site_pretenuring']);
    expect(off.returned).toBe(false);
    expect(decisions(off.stdout)).toBe(0);
  }, 60_000);

  it('serveGateway turns it off before it serves: the gateway as the bin and the example proxy run it', async () => {
    const { stdout } = await runScript(`
      import { serveGateway } from './packages/gateway/src/serve.ts';
      await serveGateway(process.env);
      console.log('served');
      ${KEEP_A_MILLION}
      process.exit(0);
    `);
    const afterServing = stdout.slice(stdout.indexOf('served'));
    expect(afterServing).toContain('kept ');
    expect(decisions(afterServing)).toBe(0);
  }, 60_000);
});
