// The log file's own buffer: lines reach the file whole and in order, once they fill a write and when the log closes.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import { createGatewayLog } from '../src/observe/access-log.js';

const dir = mkdtempSync(join(tmpdir(), 'tollgate-log-file-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Line {
  msg: string;
  n: number;
  tenant: string;
}

function readLines(file: string): Line[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => JSON.parse(line) as Line);
}

describe('a log file', () => {
  it('writes the lines it holds once they fill a write, multibyte text byte for byte, the rest when closed', async () => {
    const file = join(dir, 'access.log');
    const log = createGatewayLog({ level: 'info', destination: file });
    // Three bytes per character in UTF-8 and one UTF-16 unit: bytes and string length differ in every line.
    const tenant = 'テナント-'.repeat(20);
    const count = 200;
    for (let n = 0; n < count; n++) log.logger.info({ n, tenant }, 'request completed');
    const beforeClose = readLines(file);
    // Lines of over 300 bytes: 200 of them fill several writes, and what is written is whole lines.
    expect(beforeClose.length).toBeGreaterThan(0);
    expect(beforeClose.length).toBeLessThan(count);
    await log.close();
    const lines = readLines(file);
    expect(lines.map((line) => line.n)).toEqual(Array.from({ length: count }, (_, n) => n));
    for (const line of lines) expect(line).toMatchObject({ msg: 'request completed', tenant });
  });
});
