// @tollgate/core/csv: the one CSV writer, for the audit route's `?format=csv` and the command line's `--format csv`.
import { loadOnDemand } from './optional-peer.js';

/**
 * Rows of cells as CSV text: one line each, ending in `\n`, a cell quoted where it holds a comma, a quote or a line
 * break. csv-stringify is loaded at the first call: a gateway that never writes CSV never loads it.
 */
export function csvText(rows: readonly (readonly string[])[]): string {
  return loadOnDemand<typeof import('csv-stringify/sync')>(import.meta.url, 'csv-stringify/sync').stringify(
    rows as string[][],
  );
}
