// The installed package's version, for `tollgate --version` and `tollgate-gateway --version`.
import { readFileSync } from 'node:fs';

/** The version in the package's own package.json (beside `src/` and `dist/` alike). */
export function packageVersion(): string {
  const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return manifest.version;
}
