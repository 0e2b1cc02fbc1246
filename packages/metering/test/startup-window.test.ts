// The hard stop in the moments after meter() is made, before the encodings load: counts are byte bounds then, and no answer within its grant is cut.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from '@jest/globals';

const CHILD = fileURLToPath(new URL('./fixtures/stream-at-startup.mts', import.meta.url));
const ROOT = fileURLToPath(new URL('../../..', import.meta.url));

describe('hard stop at startup', () => {
  it('does not cut a stream within its grant while the tokenizers are still loading', async () => {
    const child = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', CHILD], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let errors = '';
    child.stdout.on('data', (chunk: Buffer) => (output += String(chunk)));
    child.stderr.on('data', (chunk: Buffer) => (errors += String(chunk)));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect({ code, errors: errors.replace(/.*ExperimentalWarning.*\n?/g, '') }).toMatchObject({ code: 0 });
    const result = JSON.parse(output) as { loadedBefore: boolean; finishReasons: string[] };
    // The case this test is about: the request came before the encodings were in.
    expect(result.loadedBefore).toBe(false);
    // Before: the 160 bytes passed the 64-token grant as a byte bound, and the stream was ended with "length".
    expect(result.finishReasons).toEqual(['stop']);
  });
});
