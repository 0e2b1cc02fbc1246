// The README's example runs as written: examples/embedded.ts serves a dashboard whose tenants' spend matches its ledger.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { generateApiKey } from '@tollgate/auth';

const PACKAGE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ROOT = path.resolve(PACKAGE, '../..');
const adminKey = generateApiKey();
let child: ChildProcess;
let url: string;
let output = '';

beforeAll(async () => {
  child = spawn(
    process.execPath,
    ['--import', 'tsx', '--conditions=source', 'packages/dashboard/examples/embedded.ts'],
    {
      cwd: ROOT,
      env: { ...process.env, PORT: '0', ADMIN_KEY: adminKey },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the example did not start:\n${output}`)), 45_000);
    child.stdout!.on('data', () => {
      const match = /listening on (http:\/\/127\.0\.0\.1:\d+\/dashboard)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the example exited with ${code}:\n${output}`));
    });
  });
}, 60_000);

afterAll(async () => {
  if (child && child.exitCode === null && child.signalCode === null) {
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    await exited;
  }
});

describe('examples/embedded.ts', () => {
  it("serves the overview with each tenant's ledger spend equal to what its budget was charged", async () => {
    const answer = await fetch(`${url}/api/overview`, { headers: { authorization: `Bearer ${adminKey}` } });
    expect(answer.status).toBe(200);
    const overview = (await answer.json()) as {
      tenants: { id: string; ledgerSpentNanoUsd: number; budget: { spentNanoUsd: number } | null }[];
    };
    expect(overview.tenants.map((row) => row.id).sort()).toEqual(['acme', 'globex']);
    for (const row of overview.tenants) expect(row.budget!.spentNanoUsd).toBe(row.ledgerSpentNanoUsd);
    expect(output).toContain(`admin key: ${adminKey}`);
    expect((await fetch(`${url}/api/overview`)).status).toBe(401);
  });
});
