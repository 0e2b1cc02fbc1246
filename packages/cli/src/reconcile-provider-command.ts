// `tollgate reconcile-provider`: what a provider billed per day and model (its admin usage and cost API) beside what
// the ledger recorded, with the difference; exit 1 when a difference passes the threshold, for a nightly job.
import { createPricing, usdToNano } from '@tollgate/core';
import {
  commandFailure,
  EXIT_FAILED,
  EXIT_OK,
  FORMAT_OPTIONS,
  formatRows,
  HELP_OPTION,
  outputFormat,
  parseCommandLine,
  UsageError,
} from './command-line.js';
import type { Column, CommandIo } from './command-line.js';
import { openLedger } from '@tollgate/metering';
import { ledgerSource } from './ledger-source.js';
import type { ReportDefaults } from './ledger-source.js';
import { ledgerCosts, providerCosts, reconcileCosts } from './provider-billing.js';
import type { BilledProvider, ReconciledRow } from './provider-billing.js';

const USAGE = `Usage: tollgate reconcile-provider --provider openai|anthropic --from YYYY-MM-DD --to YYYY-MM-DD
                                   [--threshold 5%] [--min-usd 0.01] [--base-url URL]
                                   [--postgres <url> | --data-dir <dir>] [--schema <name>] [--table <name>]
                                   [--format table|csv|json]

Reads what the provider billed per UTC day and model (OpenAI's organization costs API with the admin key in
OPENAI_ADMIN_KEY; Anthropic's cost report with the Admin API key in ANTHROPIC_ADMIN_KEY), every page, and
prints it beside what the usage ledger recorded for that provider, with the difference, in USD. Models are
matched by the catalogue's names. A row is flagged when its difference passes --threshold of the larger
figure (default 5%) and --min-usd (default 0.01). The ledger is the one report reads (TOLLGATE_CONFIG's
postgresUrl or dataDir), or --postgres / --data-dir.

Exit code 0 no flagged row, 1 a flagged row (or a failure), 2 a wrong command line.
`;

const OPTIONS = {
  provider: { type: 'string' },
  from: { type: 'string' },
  to: { type: 'string' },
  threshold: { type: 'string' },
  'min-usd': { type: 'string' },
  'base-url': { type: 'string' },
  postgres: { type: 'string' },
  'data-dir': { type: 'string' },
  schema: { type: 'string' },
  table: { type: 'string' },
  ...FORMAT_OPTIONS,
  ...HELP_OPTION,
} as const;

const ADMIN_KEY_ENV: Record<BilledProvider, string> = { openai: 'OPENAI_ADMIN_KEY', anthropic: 'ANTHROPIC_ADMIN_KEY' };

const COLUMNS: readonly Column<ReconciledRow>[] = [
  { name: 'day', value: (row) => row.day },
  { name: 'model', value: (row) => row.model },
  { name: 'providerUsd', title: 'provider USD', kind: 'usd', value: (row) => row.providerNanoUsd },
  { name: 'ledgerUsd', title: 'ledger USD', kind: 'usd', value: (row) => row.ledgerNanoUsd },
  { name: 'differenceUsd', title: 'difference USD', kind: 'usd', value: (row) => row.differenceNanoUsd },
  {
    name: 'differencePercent',
    title: 'difference %',
    kind: 'number',
    value: (row) => Math.round(row.differenceShare * 10_000) / 100,
  },
  { name: 'flagged', value: (row) => (row.flagged ? 'yes' : 'no') },
];

/** `5%`, `5` (percent) or `0.05`. */
function thresholdOf(text: string | undefined): number {
  if (text === undefined) return 0.05;
  const percent = text.endsWith('%');
  const value = Number(percent ? text.slice(0, -1) : text);
  const share = percent || value > 1 ? value / 100 : value;
  if (!Number.isFinite(share) || share < 0 || share > 1)
    throw new UsageError(`--threshold must be a share like 5% or 0.05; got ${JSON.stringify(text)}`);
  return share;
}

function minNanoOf(text: string | undefined): number {
  if (text === undefined) return 10_000_000;
  const usd = Number(text);
  if (!Number.isFinite(usd) || usd < 0)
    throw new UsageError(`--min-usd must be an amount of USD; got ${JSON.stringify(text)}`);
  return usdToNano(usd);
}

/** Runs `reconcile-provider ...` and returns the exit code. `defaults` names the proxy's ledger (its config). */
export async function runReconcileProviderCommand(
  argv: string[],
  io: CommandIo,
  env: NodeJS.ProcessEnv,
  defaults: () => ReportDefaults | Promise<ReportDefaults> = () => ({}),
): Promise<number> {
  try {
    const { values } = parseCommandLine(argv, OPTIONS);
    if (values.help) {
      io.stdout.write(USAGE);
      return EXIT_OK;
    }
    const format = outputFormat(values);
    const provider = values.provider;
    if (provider !== 'openai' && provider !== 'anthropic')
      throw new UsageError(`--provider must be openai or anthropic; got ${JSON.stringify(provider ?? null)}`);
    if (values.from === undefined || values.to === undefined) throw new UsageError('--from and --to are required');
    const share = thresholdOf(values.threshold);
    const minNanoUsd = minNanoOf(values['min-usd']);
    const adminKey = env[ADMIN_KEY_ENV[provider]];
    if (!adminKey)
      throw new UsageError(`${ADMIN_KEY_ENV[provider]} is not set: the provider's admin key reads its billing`);
    const fallback = await defaults();
    const location = { schema: values.schema ?? fallback.schema, table: values.table ?? fallback.table };
    const billed = await providerCosts({
      provider,
      adminKey,
      from: values.from,
      to: values.to,
      ...(values['base-url'] ? { baseUrl: values['base-url'] } : {}),
    });
    const ledger = await openLedger(ledgerSource(values, fallback), 'tollgate reconcile-provider');
    let rows: ReconciledRow[];
    try {
      const recorded = await ledgerCosts(ledger.db, {
        provider,
        from: values.from,
        to: values.to,
        ...(location.schema ? { schema: location.schema } : {}),
        ...(location.table ? { table: location.table } : {}),
      });
      rows = reconcileCosts(billed, recorded, createPricing(), { share, minNanoUsd });
    } finally {
      await ledger.close();
    }
    const flagged = rows.filter((row) => row.flagged).length;
    io.stdout.write(formatRows(format, COLUMNS, rows));
    const summary = `${flagged} of ${rows.length} day and model row(s) differ by more than ${Math.round(share * 10_000) / 100}% and $${(minNanoUsd / 1e9).toFixed(2)}\n`;
    (format === 'table' ? io.stdout : io.stderr).write(summary);
    return flagged > 0 ? EXIT_FAILED : EXIT_OK;
  } catch (error) {
    return commandFailure(error, 'tollgate reconcile-provider', io);
  }
}
