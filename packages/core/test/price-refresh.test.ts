// A price source read over HTTP and from a file: errors that stay visible, capped bodies, the kept copy.
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createPricing } from '@tollgate/core';

const perToken = (usdPerMTok: number) => usdPerMTok / 1_000_000;
const source = (inputUsd: number) =>
  JSON.stringify({
    'gpt-4o': {
      litellm_provider: 'openai',
      input_cost_per_token: perToken(inputUsd),
      output_cost_per_token: perToken(10),
    },
  });
const silent = { info: () => undefined, error: () => undefined };

let body = source(2);
let etag = '"a"';
const asked: (string | undefined)[] = [];
let server: Server;
let url: string;
const dir = mkdtempSync(path.join(tmpdir(), 'tg-price-refresh-'));

beforeAll(async () => {
  server = createServer((req, res) => {
    asked.push(req.headers['if-none-match']);
    if (req.url === '/huge') {
      // No Content-Length: the cap must hold while the body is read, not after.
      res.writeHead(200, { 'content-type': 'application/json' });
      const chunk = Buffer.alloc(1024 * 1024, 0x20);
      let sent = 0;
      const push = () => {
        while (sent < 40 && res.write(chunk)) sent++;
        if (sent < 40) res.once('drain', push);
        else res.end('{}');
      };
      res.on('error', () => undefined);
      push();
      return;
    }
    if (req.headers['if-none-match'] === etag) {
      res.writeHead(304).end();
      return;
    }
    res.writeHead(200, { etag, 'content-type': 'application/json' }).end(body);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => {
  server.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('a price source over HTTP', () => {
  it("keeps a refused body's error until a good one loads (a 304 never hides it)", async () => {
    const pricing = createPricing();
    const refresh = pricing.refreshFrom({ source: `${url}/prices`, refreshMs: 3_600_000 }, silent);
    await refresh.refresh();
    expect(refresh.status()).toMatchObject({ lastError: null });
    expect(pricing.get('gpt-4o').inputMicro).toBe(2_000_000);
    // A bad body under a new ETag: refused, the prices in use kept.
    body = '{ not json';
    etag = '"b"';
    await refresh.refresh();
    expect(refresh.status().lastError?.message).toMatch(/not JSON/);
    // Asked again: the refused body's ETag was never taken, so the server cannot answer 304 for it.
    await refresh.refresh();
    expect(asked.at(-1)).toBe('"a"');
    expect(refresh.status().lastError?.message).toMatch(/not JSON/);
    body = source(3);
    etag = '"c"';
    await refresh.refresh();
    expect(refresh.status().lastError).toBeNull();
    expect(pricing.get('gpt-4o').inputMicro).toBe(3_000_000);
    refresh.close();
  });

  it('refuses a body past the cap as it reads it, without a Content-Length', async () => {
    const pricing = createPricing();
    const refresh = pricing.refreshFrom({ source: `${url}/huge`, refreshMs: 3_600_000 }, silent);
    await refresh.refresh();
    expect(refresh.status().lastError?.message).toMatch(/is more than 33554432 bytes/);
    refresh.close();
  });
});

describe('the kept copy', () => {
  it('prices a restart during the source’s outage as the last load did, and says so', async () => {
    const file = path.join(dir, 'prices.json');
    const keep = path.join(dir, 'kept', 'prices.json');
    writeFileSync(file, source(4));
    const first = createPricing();
    const running = first.refreshFrom({ source: file, refreshMs: 3_600_000, keep }, silent);
    await running.refresh();
    running.close();
    expect(readFileSync(keep, 'utf8')).toBe(source(4));
    // The source is gone; a new process starts.
    rmSync(file);
    const restarted = createPricing();
    const refresh = restarted.refreshFrom({ source: file, refreshMs: 3_600_000, keep }, silent);
    await refresh.refresh();
    expect(restarted.get('gpt-4o').inputMicro).toBe(4_000_000);
    expect(refresh.status()).toMatchObject({ fromKeptCopy: true, version: first.version });
    expect(refresh.status().loadedAt).not.toBeNull();
    expect(refresh.status().lastError?.message).toMatch(/ENOENT/);
    refresh.close();
  });
});
