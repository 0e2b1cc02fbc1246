// test/setup/machine.sh, which `pnpm test` and .ci/run run first: it starts what it can and names what it cannot, one
// line each, with the command that gets it.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

const run = promisify(execFile);
const SCRIPT = fileURLToPath(new URL('./setup/machine.sh', import.meta.url));

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function which(command: string): Promise<string> {
  return (await run('bash', ['-c', `command -v ${command}`])).stdout.trim();
}

describe('test/setup/machine.sh', () => {
  let bin: string;

  beforeAll(async () => {
    // A PATH with the shell's own tools and redis-server, and neither promtool nor PostgreSQL's tools.
    bin = mkdtempSync(join(tmpdir(), 'tollgate-machine-'));
    for (const tool of ['bash', 'seq', 'sleep', 'id', 'ls', 'sort', 'tail', 'mkdir', 'redis-server'])
      symlinkSync(await which(tool), join(bin, tool));
  });

  afterAll(() => rmSync(bin, { recursive: true, force: true }));

  it('names, one line each, what it may not install or start, and leaves the verdict to the tests', async () => {
    const redisPort = await freePort();
    const postgresPort = await freePort();
    const { stdout } = await run(join(bin, 'bash'), [SCRIPT], {
      env: {
        PATH: bin,
        TOLLGATE_TEST_NO_INSTALL: '1',
        REDIS_URL: `redis://127.0.0.1:${redisPort}`,
        POSTGRES_URL: `postgres://postgres@127.0.0.1:${postgresPort}/test`,
      },
    });
    const lines = stdout.trim().split('\n');
    // Every line names one thing; Chromium's appears too on a machine without /usr/bin/chromium.
    for (const line of lines) expect(line).toMatch(/^tollgate tests: missing [^\n]+: /);
    expect(lines).toEqual(
      expect.arrayContaining([
        "tollgate tests: missing promtool, for the alert rules' tests (promtool): apt-get install -y prometheus",
        `tollgate tests: missing Redis at redis://127.0.0.1:${redisPort}: redis-server --daemonize yes --port ${redisPort} --save "", or set REDIS_URL`,
        `tollgate tests: missing PostgreSQL at postgres://postgres@127.0.0.1:${postgresPort}/test: apt-get install -y postgresql, then pg_ctlcluster <version> main start, or set POSTGRES_URL`,
      ]),
    );
  });

  it('starts a Redis that is not answering on the local port the tests name', async () => {
    const port = await freePort();
    try {
      const { stdout } = await run(join(bin, 'bash'), [SCRIPT], {
        env: {
          PATH: bin,
          REDIS_URL: `redis://127.0.0.1:${port}`,
          // PostgreSQL: the shared one where it answers; its lines are not this test's subject.
          POSTGRES_URL: process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
        },
      });
      expect(stdout).toContain(`starting redis-server on port ${port}`);
      expect(stdout).not.toContain('missing Redis');
      const answer = await new Promise<string>((resolve, reject) => {
        const socket = net.connect({ host: '127.0.0.1', port }, () => socket.write('PING\r\n'));
        socket.once('data', (data) => {
          resolve(data.toString());
          socket.destroy();
        });
        socket.once('error', reject);
      });
      expect(answer).toBe('+PONG\r\n');
    } finally {
      await new Promise<void>((resolve) => {
        const socket = net.connect({ host: '127.0.0.1', port }, () => socket.end('SHUTDOWN NOSAVE\r\n'));
        socket.once('close', () => resolve());
        socket.once('error', () => resolve());
      });
    }
  });
});
