// A running gateway's admin API, as the command lines call it: the admin key from TOLLGATE_ADMIN_KEY (never from the
// command line, where `ps` would show it), the gateway's URL from --url or TOLLGATE_URL.
import {
  commandFailure,
  EXIT_OK,
  EXIT_USAGE,
  FORMAT_OPTIONS,
  HELP_OPTION,
  parseCommandLine,
  pickCommand,
  UsageError,
} from './command-line.js';
import type { CommandIo, ParsedCommandLine } from './command-line.js';

/** Calls `method` on `<url>/admin<base><route>` with the admin key; the gateway's refusal is thrown with its reason. */
function adminApi(url: string, adminKey: string, base: string) {
  return async function call(method: string, route: string, body?: string, type = 'application/json') {
    const response = await fetch(`${url.replace(/\/$/, '')}/admin${base}${route}`, {
      method,
      headers: { authorization: `Bearer ${adminKey}`, ...(body === undefined ? {} : { 'content-type': type }) },
      ...(body === undefined ? {} : { body }),
    });
    const answer = (await response.json().catch(() => ({}))) as Record<string, unknown>;
    if (!response.ok) {
      const error = answer.error as { message?: string } | undefined;
      throw new Error(`the gateway answered ${response.status}: ${error?.message ?? 'no reason given'}`);
    }
    return answer;
  };
}

export type AdminCall = ReturnType<typeof adminApi>;

/** The admin API of the gateway a command names (`--url`, else TOLLGATE_URL, else the proxy's default address). */
function gatewayAdmin(command: string, base: string, url: string | undefined, env: NodeJS.ProcessEnv): AdminCall {
  const adminKey = env.TOLLGATE_ADMIN_KEY;
  if (!adminKey) throw new UsageError(`${command} needs the admin key in TOLLGATE_ADMIN_KEY`);
  return adminApi(url ?? (env.TOLLGATE_URL || 'http://127.0.0.1:8787'), adminKey, base);
}

/** The options every admin command takes: the gateway's `--url`, `--format`, `--help`. */
export const ADMIN_OPTIONS = { ...FORMAT_OPTIONS, ...HELP_OPTION, url: { type: 'string' } } as const;

type Options = typeof ADMIN_OPTIONS & Parameters<typeof parseCommandLine>[1];

/** One subcommand of an admin command: the gateway's admin API, its arguments and its options' values (`V`). */
export type AdminSubcommand<V> = (call: AdminCall, positionals: string[], values: V, io: CommandIo) => Promise<number>;

/** What an admin command is: its name, where its routes are under /admin, its help, options and subcommands. */
interface AdminCommand<O extends Options> {
  name: string;
  base: string;
  usage: string;
  options: O;
  subcommands: Readonly<Record<string, AdminSubcommand<ParsedCommandLine<O>['values']>>>;
}

/** Runs `<name> <subcommand> ...` against a running gateway; returns 0 done, 1 failed, 2 a wrong command line. */
export async function runAdminCommand<const O extends Options>(
  command: AdminCommand<O>,
  argv: string[],
  io: CommandIo,
  env: NodeJS.ProcessEnv,
): Promise<number> {
  try {
    const [name, ...rest] = argv;
    if (name === undefined || name === '--help' || name === '-h') {
      (name === undefined ? io.stderr : io.stdout).write(command.usage);
      return name === undefined ? EXIT_USAGE : EXIT_OK;
    }
    const run = pickCommand(name, command.subcommands, `${command.name} command`);
    const { values, positionals } = parseCommandLine(rest, command.options, true);
    // Every admin command's options include these (ADMIN_OPTIONS); a generic O does not tell the compiler so.
    const { help, url } = values as { help?: boolean; url?: string };
    if (help) {
      io.stdout.write(command.usage);
      return EXIT_OK;
    }
    const call = gatewayAdmin(command.name, command.base, url, env);
    return await run(call, positionals, values, io);
  } catch (error) {
    return commandFailure(error, `tollgate ${command.name}`, io);
  }
}
