// `tollgate budgets drift|repair|holds`: each budget's counter against the usage ledger, its repair and its holds,
// through a running gateway's /admin/budgets (so a repair is recorded in the audit trail like any admin write).
import { EXIT_OK, formatRows, outputFormat, UsageError } from './command-line.js';
import type { Column, CommandIo, ParsedCommandLine } from './command-line.js';
import { ADMIN_OPTIONS, runAdminCommand } from './admin-api.js';
import type { AdminSubcommand } from './admin-api.js';

const USAGE = `Usage: TOLLGATE_ADMIN_KEY=... tollgate budgets <command> [<budget>] [--url URL] [--format table|csv|json]

Commands (a gateway with a usage ledger):
  drift [<budget>]     Each scope's counter, what is held, the ledger's figure and the drift beyond what
                       holds explain; every configured budget without one.
  repair <budget>      Set each drifted scope's counter to the ledger's figure (audited as budget.repair).
  holds <budget>       The reservations held in the budget's scopes, their amount, age and expiry.

<budget> is global, <scope>/<id> (tenant/acme, key/k1, feature/support-bot), or user/bob?tenant=acme,
model/gpt-4o?tenant=acme, team/research?tenant=acme and member/user:bob?tenant=acme&team=research. --url is the gateway's (default TOLLGATE_URL, else http://127.0.0.1:8787).
Money is in USD (to the micro-USD); the gateway's own JSON (GET /admin/budgets/.../drift) has it in nano-USD.
Exit code 0 done, 1 failed (the gateway's refusal is printed), 2 a wrong command line.
`;

const OPTIONS = ADMIN_OPTIONS;

interface DriftRow {
  key: string;
  spentNanoUsd: number;
  reservedNanoUsd: number;
  ledgerNanoUsd: number;
  driftNanoUsd: number;
}

interface RepairRow {
  key: string;
  repaired: boolean;
  spentBeforeNanoUsd: number;
  spentAfterNanoUsd: number;
}

interface HoldRow {
  key: string;
  amountNanoUsd: number;
  ageMs: number;
  expiresAt: string;
  owner?: string;
}

const DRIFT: readonly Column<DriftRow>[] = [
  { name: 'key', title: 'budget', value: (row) => row.key },
  { name: 'counterUsd', title: 'counter USD', kind: 'usd', value: (row) => row.spentNanoUsd },
  { name: 'heldUsd', title: 'held USD', kind: 'usd', value: (row) => row.reservedNanoUsd },
  { name: 'ledgerUsd', title: 'ledger USD', kind: 'usd', value: (row) => row.ledgerNanoUsd },
  { name: 'driftUsd', title: 'drift USD', kind: 'usd', value: (row) => row.driftNanoUsd },
];

const REPAIRS: readonly Column<RepairRow>[] = [
  { name: 'key', title: 'budget', value: (row) => row.key },
  { name: 'repaired', value: (row) => (row.repaired ? 'yes' : 'no drift') },
  { name: 'counterBeforeUsd', title: 'counter before USD', kind: 'usd', value: (row) => row.spentBeforeNanoUsd },
  { name: 'counterAfterUsd', title: 'counter after USD', kind: 'usd', value: (row) => row.spentAfterNanoUsd },
];

const HOLDS: readonly Column<HoldRow>[] = [
  { name: 'key', title: 'budget', value: (row) => row.key },
  { name: 'heldUsd', title: 'held USD', kind: 'usd', value: (row) => row.amountNanoUsd },
  { name: 'ageMs', title: 'age ms', kind: 'number', value: (row) => row.ageMs },
  { name: 'expiresAt', title: 'reaped at', value: (row) => row.expiresAt },
  { name: 'owner', value: (row) => row.owner ?? '' },
];

/** `tenant/acme` → `/tenant/acme`; `user/bob?tenant=acme` keeps its query; `global` → `/global`. */
function budgetPath(budget: string | undefined, command: string): string {
  if (budget === undefined || budget === '') throw new UsageError(`budgets ${command} takes one budget: tenant/acme`);
  const [path, query] = budget.split('?', 2) as [string, string | undefined];
  const parts = path.split('/').filter((part) => part !== '');
  if (!(parts.length === 1 && parts[0] === 'global') && parts.length !== 2)
    throw new UsageError(`a budget is global or <scope>/<id>: got ${JSON.stringify(budget)}`);
  return `/${parts.map(encodeURIComponent).join('/')}${query === undefined ? '' : `?${query}`}`;
}

/** `/tenant/acme?tenant=x` with `/drift` put before the query. */
function routeOf(path: string, action: string): string {
  const [where, query] = path.split('?', 2) as [string, string | undefined];
  return `${where}/${action}${query === undefined ? '' : `?${query}`}`;
}

type Run = AdminSubcommand<ParsedCommandLine<typeof OPTIONS>['values']>;

function oneBudget(positionals: string[], command: string): string {
  if (positionals.length !== 1) throw new UsageError(`budgets ${command} takes one budget: tenant/acme`);
  return budgetPath(positionals[0], command);
}

const SUBCOMMANDS: Readonly<Record<string, Run>> = {
  async drift(call, positionals, values, io) {
    if (positionals.length > 1) throw new UsageError('budgets drift takes at most one budget');
    const route = positionals.length === 0 ? '/drift' : routeOf(budgetPath(positionals[0], 'drift'), 'drift');
    const { drift } = (await call('GET', route)) as { drift: DriftRow[] };
    io.stdout.write(formatRows(outputFormat(values), DRIFT, drift));
    return EXIT_OK;
  },
  async repair(call, positionals, values, io) {
    const { repairs } = (await call('POST', routeOf(oneBudget(positionals, 'repair'), 'repair'))) as {
      repairs: RepairRow[];
    };
    io.stdout.write(formatRows(outputFormat(values), REPAIRS, repairs));
    return EXIT_OK;
  },
  async holds(call, positionals, values, io) {
    const { holds } = (await call('GET', routeOf(oneBudget(positionals, 'holds'), 'holds'))) as { holds: HoldRow[] };
    io.stdout.write(formatRows(outputFormat(values), HOLDS, holds));
    return EXIT_OK;
  },
};

/** Runs `budgets ...` and returns the exit code: 0 done, 1 failed, 2 a wrong command line. */
export function runBudgetsCommand(argv: string[], io: CommandIo, env: NodeJS.ProcessEnv): Promise<number> {
  const command = { name: 'budgets', base: '/budgets', usage: USAGE, options: OPTIONS, subcommands: SUBCOMMANDS };
  return runAdminCommand(command, argv, io, env);
}
