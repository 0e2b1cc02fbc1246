// logSink's default destination when stdout stops draining (a stalled log shipper): memory stays bounded.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from '@jest/globals';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CHILD = fileURLToPath(new URL('./fixtures/log-sink-blocked-stdout.mts', import.meta.url));

/** Runs the child with a stdout pipe nobody reads; resolves with the heap growth it reports. */
function heapGrowthWithBlockedStdout(): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--expose-gc', '--conditions=source', '--import', 'tsx', CHILD], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    // Never read: the pipe fills after 64 KB and stays full.
    child.stdout.pause();
    let stderr = '';
    let growth: number | undefined;
    child.stderr.on('data', (bytes: Buffer) => {
      stderr += bytes.toString('utf8');
      const line = stderr.split('\n').find((text) => text.startsWith('{"growth"') && text.endsWith('}'));
      if (line === undefined || growth !== undefined) return;
      growth = (JSON.parse(line) as { growth: number }).growth;
      // Its exit would wait for stdout to drain: end it here.
      child.kill('SIGKILL');
    });
    child.on('error', reject);
    child.on('exit', () => {
      child.stdout.destroy();
      if (growth !== undefined) resolve(growth);
      else reject(new Error(`no report from the child: ${stderr}`));
    });
  });
}

describe('logSink default destination', () => {
  it('does not keep every line in memory while stdout is blocked (40 MB of lines logged)', async () => {
    const growth = await heapGrowthWithBlockedStdout();
    expect(growth).toBeLessThan(16 * 1024 * 1024);
  }, 30_000);
});
