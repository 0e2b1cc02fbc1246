// The dashboard's own files and uPlot's, read once from the package and its node_modules: nothing from a CDN.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { Request, Response } from 'express';

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
}

const OWN_FILES = ['dashboard.css', 'dashboard.js'] as const;
const UPLOT_FILES = {
  'uPlot.iife.min.js': 'uplot/dist/uPlot.iife.min.js',
  'uPlot.min.css': 'uplot/dist/uPlot.min.css',
} as const;

function typeOf(name: string): string {
  return name.endsWith('.css') ? 'text/css; charset=utf-8' : 'text/javascript; charset=utf-8';
}

function asset(path: string, name: string): Asset {
  const body = readFileSync(path);
  return { body, type: typeOf(name), etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"` };
}

/** Reads every asset now (a missing file fails at startup, not on a page view) and serves `GET /assets/:name`. */
export function assetHandler(): (req: Request, res: Response) => void {
  const assets = new Map<string, Asset>();
  // src/ and dist/ both sit one level below the package root, next to assets/.
  const ownDirectory = fileURLToPath(new URL('../assets/', import.meta.url));
  for (const name of OWN_FILES) assets.set(name, asset(`${ownDirectory}${name}`, name));
  const require = createRequire(import.meta.url);
  for (const [name, specifier] of Object.entries(UPLOT_FILES))
    assets.set(name, asset(require.resolve(specifier), name));

  return function serveAsset(req: Request, res: Response): void {
    const found = assets.get(String(req.params.name));
    if (!found) {
      res.status(404).type('text/plain').send('No such file.');
      return;
    }
    res.setHeader('content-type', found.type);
    res.setHeader('etag', found.etag);
    // The same file until the package is upgraded; an hour, then a cheap revalidation by ETag.
    res.setHeader('cache-control', 'public, max-age=3600');
    if (req.headers['if-none-match'] === found.etag) {
      res.status(304).end();
      return;
    }
    res.setHeader('content-length', found.body.length);
    res.status(200).end(req.method === 'HEAD' ? undefined : found.body);
  };
}
