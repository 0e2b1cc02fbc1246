// The security headers the proxy sets from helmet's record are helmet's own: same names, spelling, values and order.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from '@jest/globals';
import { WITH_MOCK } from './helpers/mock-upstream.js';
import express from 'express';
import helmet from 'helmet';
import type { HelmetOptions } from 'helmet';
import { createGatewayApp } from '../src/app.js';
import { validateConfig } from '../src/config/index.js';
import { helmetHeaderSteps, securityHeaders } from '../src/security-headers.js';

/** The raw header lines (name as written, value) of one GET to a server running `handler`. */
async function rawHeadersOf(handler: http.RequestListener, path = '/'): Promise<string[]> {
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address() as AddressInfo;
    return await new Promise<string[]>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.rawHeaders));
        })
        .on('error', reject);
    });
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

/** The pairs of `raw` whose names helmet's steps set. */
function securityPairs(raw: readonly string[], names: ReadonlySet<string>): string[][] {
  const pairs: string[][] = [];
  for (let i = 0; i < raw.length; i += 2) if (names.has(raw[i]!.toLowerCase())) pairs.push([raw[i]!, raw[i + 1]!]);
  return pairs;
}

describe('securityHeaders', () => {
  it.each<[string, HelmetOptions | undefined]>([
    ['the defaults', undefined],
    [
      'other options',
      {
        contentSecurityPolicy: { directives: { 'default-src': ["'none'"] } },
        hsts: { maxAge: 60 },
        xFrameOptions: { action: 'deny' },
      },
    ],
  ])('writes what helmet writes, with %s', async (_name, options) => {
    const withHelmet = express();
    withHelmet.use(helmet(options));
    withHelmet.get('/', (_req, res) => res.end('ok'));
    const setSecurityHeaders = securityHeaders(options);
    const expected = await rawHeadersOf(withHelmet);
    const actual = await rawHeadersOf((_req, res) => {
      setSecurityHeaders(res);
      res.end('ok');
    });
    const names = new Set(helmetHeaderSteps(options).map(([name]) => name.toLowerCase()));
    expect(names.size).toBeGreaterThan(5);
    expect(securityPairs(actual, names)).toEqual(securityPairs(expected, names));
    // Nothing else either, but the headers Node writes itself and Express's own.
    expect(actual.filter((_, i) => i % 2 === 0 && !names.has(actual[i]!.toLowerCase()))).toEqual([
      'Date',
      'Connection',
      'Keep-Alive',
      'Content-Length',
    ]);
  });

  it('removes what helmet removes (X-Powered-By)', () => {
    expect(helmetHeaderSteps()).toContainEqual(['X-Powered-By', undefined]);
  });

  it("is what the proxy's answers carry", async () => {
    const app = createGatewayApp(validateConfig({ ...WITH_MOCK, log: { level: 'silent' } }), {
      log: () => undefined,
      metrics: false,
      tracer: false,
    });
    try {
      const raw = await rawHeadersOf(app as unknown as http.RequestListener, '/no-such-route');
      const helmetOnly = express();
      helmetOnly.disable('x-powered-by');
      helmetOnly.use(helmet());
      helmetOnly.use((_req, res) => res.status(404).end());
      const names = new Set(helmetHeaderSteps().map(([name]) => name.toLowerCase()));
      expect(securityPairs(raw, names)).toEqual(securityPairs(await rawHeadersOf(helmetOnly), names));
      expect(raw.map((value) => value.toLowerCase())).not.toContain('x-powered-by');
    } finally {
      await app.close();
    }
  });
});
