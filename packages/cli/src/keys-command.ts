// `tollgate keys create|list|revoke|rotate|delete`: key management against a JSON config file or a Redis key store.
import { changeKey, compareKeyIds, keyPage, pageOfSorted } from '@tollgate/core/store-contracts';
import type { ApiKeyRecord, KeyChange, KeyChangeOutcome, KeyStore } from '@tollgate/core/store-contracts';
import type { KeyPage, KeyPageQuery } from '@tollgate/core/store-contracts';
import {
  commandFailure,
  EXIT_FAILED,
  EXIT_OK,
  FORMAT_OPTIONS,
  formatRows,
  HELP_OPTION,
  outputFormat,
  parseCommandLine,
  pickCommand,
  UsageError,
} from './command-line.js';
import type { Column, CommandIo, OutputFormat, ParsedCommandLine } from './command-line.js';
import {
  configKeyFromRecord,
  editConfigKeys,
  generateApiKey,
  hashApiKey,
  isValidKeyId,
  keyBudgetTerm,
  KeyTermError,
  keyExpiry,
  readConfigKeys,
  readersFolder,
  rotateApiKey,
  rotationGrace,
  waitForKeyFileReaders,
} from '@tollgate/auth';
import type { ReadersVerdict } from '@tollgate/auth';

/** Where the command writes its output. */
type KeysCommandIo = CommandIo;

const USAGE_TEXT = `Usage: tollgate keys <command> [target] [options]

Commands:
  create  --tenant <t> --user <u> [--scopes <a,b>] [--tier <t>] [--feature <f>] [--models <m1,m2>]
          [--team <team of the tenant>] [--tools <server/tool,server/*>] [--expires <30d | ISO date | never>]
          [--id <name>] [--format json]
          [--budget '{"usd":5,"period":"day"}']
          Creates a key, prints it ONCE and prints the record to store. Without --scopes the key
          holds none (it passes no scope check, such as a gateway's requiredScope); this is printed.
          --budget gives it a budget of its own (JSON of one budget or a list, as a config key's).
  list    [--tenant <t>] [--q <id start>] [--format table|csv|json]
          Lists keys (ids and attributes, never hashes), read a page of 1000 at a time.
  revoke  <id>                            Disables a key.
  rotate  <id> [--grace <0 | 1h | keep>] [--expires <30d | ISO date | never>] [--id <new>] [--format json]
          Creates a new key with every attribute of the old one, its end date included (--expires
          gives a new one); the old one stops at once (--grace 0), expires after the grace (--grace 1h),
          or stays until revoked (--grace keep, the default). The new key continues the old one's
          budget: the same limits and the same period's spend (its "budgetOf" names the key it is counted under).
  budget  <id> --budget <JSON | none>     Sets or removes a key's budget; the period's spend stays.
  delete  <id>                            Removes a key record.

Target (where records live; create without a target only prints the record):
  --config <path>                         A JSON config file (or a data directory's keys.json); its "keys"
                                          array is edited atomically, under a lock.
  --redis <url> [--prefix <p>]            A Redis key store (@tollgate/redis), prefix default "tollgate:".

What each guarantees:
  --config  Every change is checked as the gateway checks the file at start (the whole file: a key's
            tenant, tier and tools must exist; a data directory's keys.json is checked against the
            config its gateway serves); a change that would leave it invalid is refused and the file
            stays byte for byte as it was. A revoke or delete is written even while another part of
            the file does not validate (it only takes a key away): gateways reading the file take
            revocations, expiries and deletions from it anyway, within a second. The command then
            waits up to 3 s for each gateway reading the file to say it took the change, and says
            which did; a revoke, delete or rotate --grace 0 that a running reader did not take exits 1.
  --redis   A revoke, a rotate and a budget change are each one atomic store call (a revoke is never
            undone); every process's key cache drops the key at once (pub/sub), and a cached record lives
            at most a minute (keyCache.maxAgeMs) if that is lost.

--json is short for --format json. Exit code 0 done, 1 failed or refused, 2 a wrong command line.
`;

/** The record store a command works on: the config file or a KeyStore, behind one shape. */
interface KeyTarget {
  describe: string;
  /** When a revocation takes effect, for the message after `revoke`. */
  revokedWhen: string;
  /** One page of keys in id order (KeyStore.page). */
  page(query: KeyPageQuery): Promise<KeyPage>;
  findById(id: string): Promise<ApiKeyRecord | undefined>;
  /** Adds a record; false when its id is taken. */
  add(record: ApiKeyRecord): Promise<boolean>;
  /**
   * Changes a record (and adds one: a rotation) in one step, as KeyStore.change does; `narrows` when the change only
   * takes a key away.
   */
  change(
    id: string,
    decide: (record: ApiKeyRecord) => KeyChange | undefined,
    narrows: boolean,
  ): Promise<KeyChangeOutcome>;
  /** Disables a record by id; false when it is gone. */
  revoke(id: string): Promise<boolean>;
  delete(id: string): Promise<boolean>;
  /**
   * After a change: says what became of it where the target cannot apply it itself (the readers of a file), and
   * whether it reached every reader. `mustReach`: the change takes a key away, and a reader that missed it fails.
   */
  settle?(io: KeysCommandIo, mustReach: boolean): Promise<boolean>;
  close(): Promise<void>;
}

/** What `runKeysCommand` checks beyond the keys' own shape, and how long it waits for the file's readers. */
export interface KeysCommandOptions {
  /**
   * The problems of a whole config file as a change would write it, each naming its field: a change that leaves
   * any is refused, nothing written (`tollgate keys` passes the gateway's own validation, with its did-you-means).
   * A revocation or deletion is written when it adds none to those the file already had (it only takes a key
   * away; the gateways reading the file take it even from a file that does not validate). @default none
   */
  configProblems?: (config: Readonly<Record<string, unknown>>, path: string) => readonly string[];
  /**
   * The problems of a record about to be added to a key store (`--redis`), each naming its field: what the gateway
   * would refuse to serve (`tollgate keys` checks the names against TOLLGATE_CONFIG's config when it is set).
   * Undefined when nothing can check them, which the command says. @default nothing checks them
   */
  storedKeyProblems?: (record: ApiKeyRecord) => readonly string[] | undefined;
  /**
   * How long a change to a config file waits for the processes reading it (they note what they took beside it)
   * to take it, before it says which have not. @default 3000 (three times a gateway's 1 s re-read)
   */
  readersWaitMs?: number;
}

/** A change the config's checks refused: the file is as it was. */
class ConfigRefusedError extends Error {
  constructor(path: string, problems: readonly string[], what = 'would not validate after this change') {
    super(
      `Refused: ${path} ${what}, so nothing was written:\n${problems.map((problem) => `  - ${problem}`).join('\n')}`,
    );
  }
}

/** Problems told apart from their place in the keys array (a deletion moves every later index). */
const unplaced = (problem: string) => problem.replace(/^keys\[\d+\]/, 'keys[]');

function configTarget(path: string, options: KeysCommandOptions): KeyTarget {
  const problemsOf = (config: Readonly<Record<string, unknown>>) => options.configProblems?.(config, path) ?? [];
  let written: { text: string; problems: readonly string[] } | undefined;
  /** Edits the keys; `narrows` when the change only takes a key away. */
  const edit = <T>(
    change: (records: ApiKeyRecord[]) => { changed: boolean; records: ApiKeyRecord[]; result: T },
    narrows: boolean,
    create = false,
  ) => {
    let problems: readonly string[] = [];
    return editConfigKeys(path, change, {
      create,
      check(before, after) {
        problems = problemsOf(after);
        if (problems.length === 0) return;
        const had = new Set(problemsOf(before).map(unplaced));
        if (!narrows || problems.some((problem) => !had.has(unplaced(problem))))
          throw new ConfigRefusedError(path, problems);
      },
      written: (text) => (written = { text, problems }),
    });
  };
  const change = (id: string, decide: (record: ApiKeyRecord) => KeyChange | undefined, narrows: boolean) =>
    edit((records): { changed: boolean; records: ApiKeyRecord[]; result: KeyChangeOutcome } => {
      const index = records.findIndex((record) => record.id === id);
      if (index < 0) return { changed: false, records, result: 'missing' };
      const current = records[index]!;
      const decided = decide(current);
      if (!decided) return { changed: false, records, result: 'declined' };
      if (decided.add && records.some((record) => record.id === decided.add!.id))
        return { changed: false, records, result: 'taken' };
      const next = [...records];
      // A revoke is never undone, whatever the change says.
      next[index] = current.disabled === true ? { ...decided.record, disabled: true } : decided.record;
      return { changed: true, records: decided.add ? [...next, decided.add] : next, result: 'done' };
    }, narrows);
  return {
    describe: path,
    revokedWhen:
      'each gateway reading this file takes it within a second of the write (even while another part of the file does not validate)',
    page: async (query) =>
      pageOfSorted(
        (await readConfigKeys(path)).sort((a, b) => compareKeyIds(a.id, b.id)),
        query,
      ),
    findById: async (id) => (await readConfigKeys(path)).find((record) => record.id === id),
    add: (record) =>
      edit(
        (records) => {
          if (records.some((existing) => existing.id === record.id)) return { changed: false, records, result: false };
          return { changed: true, records: [...records, record], result: true };
        },
        false,
        true,
      ),
    change,
    revoke: async (id) => (await change(id, (record) => ({ record: { ...record, disabled: true } }), true)) === 'done',
    delete: (id) =>
      edit((records) => {
        const next = records.filter((record) => record.id !== id);
        return { changed: next.length !== records.length, records: next, result: next.length !== records.length };
      }, true),
    async settle(io, mustReach) {
      if (!written) return true;
      const { text, problems } = written;
      if (problems.length > 0)
        io.stderr.write(
          `Warning: ${path} still does not validate (${problems.length} problem${problems.length === 1 ? '' : 's'} it had before this change). The gateways reading it take its revocations, expiries and deletions anyway; its other changes wait for a valid file, and no gateway starts on it until then:\n${problems.map((problem) => `  - ${problem}`).join('\n')}\n`,
        );
      return reportReaders(io, path, await waitForKeyFileReaders(path, text, options.readersWaitMs ?? 3000), mustReach);
    },
    close: async () => undefined,
  };
}

/** Says which processes reading the file took the change; false when one that should have has not. */
function reportReaders(io: KeysCommandIo, path: string, verdict: ReadersVerdict, mustReach: boolean): boolean {
  const who = (readers: ReadersVerdict['took']) =>
    readers.map((reader) => `pid ${reader.pid} on ${reader.host}`).join(', ');
  if (verdict.took.length === 0 && verdict.waiting.length === 0) {
    io.stdout.write(
      `No running gateway has noted that it reads ${path} (those that do note it in ${readersFolder(path)}): whether one runs on it cannot be known here; one that starts reads it whole.\n`,
    );
    return true;
  }
  if (verdict.took.length > 0) io.stdout.write(`Taken by the gateway processes reading it: ${who(verdict.took)}.\n`);
  if (verdict.waiting.length === 0) return true;
  io.stderr.write(
    `Not taken within ${verdict.waiting.length === 1 ? 'its' : 'their'} time by ${who(verdict.waiting)}, which read${verdict.waiting.length === 1 ? 's' : ''} ${path}: ${mustReach ? 'the key may still work there; look at its log and /healthz' : 'check its log'}.\n`,
  );
  return !mustReach;
}

function storeTarget(
  store: KeyStore,
  describe: string,
  close: () => Promise<void>,
  options: KeysCommandOptions,
): KeyTarget {
  return {
    describe,
    revokedWhen: 'it stops working at once',
    page: (query) => keyPage(store, query),
    findById: (id) => store.findById(id),
    async add(record) {
      const problems = options.storedKeyProblems?.(record);
      if (problems && problems.length > 0)
        throw new ConfigRefusedError(describe, problems, "would hold a key the gateway's config cannot serve");
      if (await store.findById(record.id)) return false;
      await store.put(record);
      return true;
    },
    // One atomic store call (KeyStore.change): a revoke between the read and the write is never undone.
    change: (id, decide) =>
      changeKey(store, id, (record) => {
        const decided = decide(record);
        for (const changed of decided ? [decided.record, decided.add] : []) {
          const problems = changed && options.storedKeyProblems?.(changed);
          if (problems && problems.length > 0)
            throw new ConfigRefusedError(describe, problems, "would hold a key the gateway's config cannot serve");
        }
        return decided;
      }),
    // One atomic store call: a concurrent put cannot undo the revocation.
    revoke: (id) => store.disable(id),
    delete: (id) => store.delete(id),
    close,
  };
}

async function redisTarget(url: string, prefix: string, options: KeysCommandOptions): Promise<KeyTarget> {
  // Loaded on demand: only `--redis` needs a Redis client.
  const { createRedisStores } = await import('@tollgate/redis').catch((error: unknown) => {
    throw new Error(
      '--redis needs @tollgate/redis, an optional peer dependency of @tollgate/cli: npm install @tollgate/redis',
      { cause: error },
    );
  });
  // A one-shot command reads each key once: no cache, no subscriber connection.
  const stores = createRedisStores({ url, prefix, keyCache: false });
  return storeTarget(stores.keys, `Redis (prefix "${prefix}")`, () => stores.close(), options);
}

function splitList(value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  return value
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
}

function defaultId(tenant: string | undefined, user: string | undefined): string {
  const suffix = hashApiKey(generateApiKey()).slice(0, 8);
  const named = [tenant, user, suffix].filter((part) => part !== undefined).join('-');
  return isValidKeyId(named) ? named : `key-${suffix}`;
}

function status(record: ApiKeyRecord, now: number): string {
  if (record.disabled === true) return 'revoked';
  if (record.expiresAt !== undefined && !(Date.parse(record.expiresAt) > now)) return 'expired';
  return 'active';
}

/** What `list` shows of a record: its attributes and status, never its hash. */
function listColumns(now: number): Column<ApiKeyRecord>[] {
  return [
    { name: 'id', value: (record) => record.id },
    { name: 'status', value: (record) => status(record, now) },
    { name: 'tenant', value: (record) => record.tenantId },
    { name: 'user', value: (record) => record.userId },
    { name: 'tier', value: (record) => record.tier },
    { name: 'feature', value: (record) => record.feature },
    { name: 'scopes', kind: 'list', value: (record) => record.scopes },
    { name: 'models', kind: 'list', value: (record) => record.models },
    { name: 'expiresAt', title: 'expires', value: (record) => record.expiresAt },
    { name: 'createdAt', title: 'created', value: (record) => record.createdAt },
  ];
}

function printCreated(
  io: KeysCommandIo,
  key: string,
  record: ApiKeyRecord,
  target: KeyTarget | undefined,
  format: OutputFormat,
  verb: string,
): void {
  const entry = configKeyFromRecord(record);
  if (format === 'json') {
    io.stdout.write(`${JSON.stringify({ key, record: entry, storedIn: target?.describe ?? null }, null, 2)}\n`);
    return;
  }
  const who = [record.tenantId && `tenant ${record.tenantId}`, record.userId && `user ${record.userId}`]
    .filter(Boolean)
    .join(', ');
  io.stdout.write(
    [
      `${verb} API key "${record.id}"${who ? ` for ${who}` : ''} (${record.scopes.length ? `scopes: ${record.scopes.join(' ')}` : "no scopes: it passes no scope check, such as a gateway's requiredScope; give --scopes a,b"}).`,
      target
        ? `Stored in ${target.describe}.`
        : 'Not stored anywhere yet: add the record below to the "keys" array of your config.',
      '',
      `  ${key}`,
      '',
      'This is the only time the key is shown; only its SHA-256 is kept. Store it now.',
      '',
      'Record:',
      JSON.stringify(entry, null, 2),
      '',
    ].join('\n'),
  );
}

/** The options `keys` reads. */
const OPTIONS = {
  config: { type: 'string' },
  redis: { type: 'string' },
  prefix: { type: 'string' },
  tenant: { type: 'string' },
  q: { type: 'string' },
  user: { type: 'string' },
  scopes: { type: 'string' },
  tier: { type: 'string' },
  feature: { type: 'string' },
  team: { type: 'string' },
  models: { type: 'string' },
  tools: { type: 'string' },
  expires: { type: 'string' },
  grace: { type: 'string' },
  budget: { type: 'string' },
  id: { type: 'string' },
  ...FORMAT_OPTIONS,
  ...HELP_OPTION,
} as const;

type KeysValues = ParsedCommandLine<typeof OPTIONS>['values'];

/** One run of a command: what the command line said, and where the keys are. */
interface KeysRun {
  command: string;
  values: KeysValues;
  /** The positional arguments after the command. */
  rest: string[];
  target: KeyTarget | undefined;
  now: number;
  io: KeysCommandIo;
}

function needTarget(run: KeysRun): KeyTarget {
  if (!run.target) throw new UsageError(`"keys ${run.command}" needs --config <path> or --redis <url>`);
  return run.target;
}

function oneId(run: KeysRun): string {
  if (run.rest.length !== 1) throw new UsageError(`"keys ${run.command}" takes one key id`);
  return run.rest[0]!;
}

function checkedId(id: string): string {
  if (!isValidKeyId(id)) throw new UsageError('--id must be 1-128 characters: letters, digits, . _ : @ -');
  return id;
}

/** create and rotate print the new key as text, or as JSON. */
const createdFormat = (values: KeysValues) => outputFormat(values, ['table', 'json']);

async function createKey(run: KeysRun): Promise<number> {
  const { values, rest, target, now, io } = run;
  if (rest.length > 0)
    throw new UsageError(`"keys create" takes no positional arguments (got ${JSON.stringify(rest[0])})`);
  const format = createdFormat(values);
  const expiresAt = keyExpiry(values.expires, now, '--expires');
  const id = checkedId(values.id ?? defaultId(values.tenant, values.user));
  const key = generateApiKey();
  const record: ApiKeyRecord = {
    id,
    sha256: hashApiKey(key),
    scopes: splitList(values.scopes) ?? [],
    createdAt: new Date(now).toISOString(),
  };
  if (values.tenant !== undefined) record.tenantId = values.tenant;
  if (values.user !== undefined) record.userId = values.user;
  if (values.tier !== undefined) record.tier = values.tier;
  if (values.feature !== undefined) record.feature = values.feature;
  if (values.team !== undefined) record.team = values.team;
  const models = splitList(values.models);
  if (models !== undefined) record.models = models;
  const tools = splitList(values.tools);
  if (tools !== undefined) record.tools = tools;
  if (expiresAt !== undefined) record.expiresAt = expiresAt;
  const budget = values.budget === undefined ? null : keyBudgetTerm(values.budget, '--budget');
  if (budget !== null) record.budget = budget;
  if (target && !(await target.add(record))) {
    io.stderr.write(`A key with id "${id}" already exists in ${target.describe}; choose another --id.\n`);
    return EXIT_FAILED;
  }
  printCreated(io, key, record, target, format, 'Created');
  await target?.settle?.(format === 'json' ? quiet(io) : io, false);
  return EXIT_OK;
}

/** Where a command whose output is JSON says the rest: errors still reach stderr, stdout stays JSON. */
function quiet(io: KeysCommandIo): KeysCommandIo {
  return { stdout: io.stderr, stderr: io.stderr };
}

/** Keys `list` reads a page. */
const LIST_PAGE = 1000;

async function listKeys(run: KeysRun): Promise<number> {
  const { now, io } = run;
  const format = outputFormat(run.values);
  if (run.rest.length > 0) throw new UsageError(`"keys list" takes no positional arguments`);
  const target = needTarget(run);
  const { tenant, q } = run.values;
  const records: ApiKeyRecord[] = [];
  // Page by page: a store of 100,000 keys answers 100 replies of 1000, never one of every key.
  let after: string | undefined;
  do {
    const page = await target.page({
      limit: LIST_PAGE,
      ...(tenant === undefined ? {} : { tenantId: tenant }),
      ...(q === undefined ? {} : { prefix: q }),
      ...(after === undefined ? {} : { after }),
    });
    records.push(...page.keys);
    after = page.next;
  } while (after !== undefined);
  if (format === 'table' && records.length === 0) io.stdout.write(`No keys in ${target.describe}.\n`);
  else io.stdout.write(formatRows(format, listColumns(now), records));
  return EXIT_OK;
}

/** `revoke` and `delete`: one key by id, told apart by what is done to it and what is said after. */
function removeKey(how: 'revoke' | 'delete'): (run: KeysRun) => Promise<number> {
  return async function removeOneKey(run: KeysRun): Promise<number> {
    const id = oneId(run);
    const target = needTarget(run);
    if (!(await target[how](id))) {
      run.io.stderr.write(`No key with id "${id}" in ${target.describe}.\n`);
      return EXIT_FAILED;
    }
    run.io.stdout.write(
      how === 'revoke'
        ? `Revoked key "${id}" in ${target.describe}; ${target.revokedWhen}.\n`
        : `Deleted key "${id}" from ${target.describe}.\n`,
    );
    return (await (target.settle?.(run.io, true) ?? true)) ? EXIT_OK : EXIT_FAILED;
  };
}

async function rotateKey(run: KeysRun): Promise<number> {
  const { values, now, io } = run;
  const oldId = oneId(run);
  const target = needTarget(run);
  // Read before anything is stored: a bad term after the add would leave a key nobody was shown.
  const format = createdFormat(values);
  const grace = rotationGrace(values.grace, now, '--grace');
  const expiresAt = keyExpiry(values.expires, now, '--expires');
  const id = values.id === undefined ? undefined : checkedId(values.id);
  // One step (KeyStore.change): the old key read, its successor added and the old key ended together.
  const rotation = await rotateApiKey((keyId, decide) => target.change(keyId, decide, false), oldId, {
    grace,
    expiresAt,
    id,
    now,
  });
  if (rotation.outcome !== 'done') {
    const why: Record<Exclude<KeyChangeOutcome, 'done'>, string> = {
      missing: `No key with id "${oldId}" in ${target.describe}.`,
      declined: `The key "${oldId}" is revoked: create a new key instead.`,
      taken: `A key with id "${rotation.successorId ?? ''}" already exists in ${target.describe}; choose another --id.`,
    };
    io.stderr.write(`${why[rotation.outcome]}\n`);
    return EXIT_FAILED;
  }
  const { key, record } = rotation;
  printCreated(io, key, record, target, format, `Rotated "${oldId}" to new`);
  if (format !== 'json') {
    const after = {
      revoke: `The old key "${oldId}" is revoked; ${target.revokedWhen}.`,
      expire: `The old key "${oldId}" keeps working until the grace period ends.`,
      keep: `The old key "${oldId}" keeps working until you run "keys revoke ${oldId}".`,
    };
    io.stdout.write(`${after[grace.oldKey]}\n`);
  }
  const reached = await (target.settle?.(format === 'json' ? quiet(io) : io, grace.oldKey === 'revoke') ?? true);
  return reached ? EXIT_OK : EXIT_FAILED;
}

/** `budget <id> --budget <JSON | none>`: the key's budget set or taken away; the period's spend stays where it is. */
async function setKeyBudget(run: KeysRun): Promise<number> {
  const id = oneId(run);
  if (run.values.budget === undefined) throw new UsageError('"keys budget" needs --budget <JSON | none>');
  const budget = keyBudgetTerm(run.values.budget, '--budget');
  const target = needTarget(run);
  const outcome = await target.change(
    id,
    (record) => {
      const { budget: _old, ...rest } = record;
      return { record: budget === null ? rest : { ...rest, budget } };
    },
    false,
  );
  if (outcome === 'missing') {
    run.io.stderr.write(`No key with id "${id}" in ${target.describe}.\n`);
    return EXIT_FAILED;
  }
  run.io.stdout.write(
    budget === null
      ? `Key "${id}" has no budget of its own now.\n`
      : `Key "${id}" has the budget ${JSON.stringify(budget)} now; what it spent this period still counts.\n`,
  );
  return (await (target.settle?.(run.io, false) ?? true)) ? EXIT_OK : EXIT_FAILED;
}

const COMMANDS: Readonly<Record<string, (run: KeysRun) => Promise<number>>> = {
  create: createKey,
  list: listKeys,
  revoke: removeKey('revoke'),
  delete: removeKey('delete'),
  rotate: rotateKey,
  budget: setKeyBudget,
};

/** Where the keys are: a config file, a Redis, or nowhere yet (`create` prints the record to add). */
async function openTarget(values: KeysValues, options: KeysCommandOptions): Promise<KeyTarget | undefined> {
  if (values.prefix !== undefined && values.redis === undefined)
    throw new UsageError('--prefix only applies with --redis');
  if (values.config !== undefined) return configTarget(values.config, options);
  if (values.redis !== undefined) return redisTarget(values.redis, values.prefix ?? 'tollgate:', options);
  return undefined;
}

/**
 * Runs `keys <command> ...` (the leading `keys` is optional) and returns the exit code:
 * 0 done, 1 the operation failed, 2 the command line was wrong. Never prints a key except
 * the new one on `create`/`rotate`, and never prints hashes in `list`.
 */
export async function runKeysCommand(
  argv: string[],
  io: KeysCommandIo = { stdout: process.stdout, stderr: process.stderr },
  options: KeysCommandOptions = {},
): Promise<number> {
  const args = argv[0] === 'keys' ? argv.slice(1) : argv;
  let target: KeyTarget | undefined;
  try {
    const { values, positionals } = parseCommandLine(args, OPTIONS, true);
    const [command, ...rest] = positionals;
    if (values.help || command === 'help') {
      io.stdout.write(USAGE_TEXT);
      return EXIT_OK;
    }
    if (command === undefined) throw new UsageError(`give a command: ${Object.keys(COMMANDS).join(', ')}`);
    const run = pickCommand(command, COMMANDS);
    if (values.config !== undefined && values.redis !== undefined)
      throw new UsageError('give --config or --redis, not both');
    target = await openTarget(values, options);
    return await run({ command, values, rest, target, now: Date.now(), io });
  } catch (error) {
    if (error instanceof ConfigRefusedError) {
      io.stderr.write(`${error.message}\n`);
      return EXIT_FAILED;
    }
    // A term that does not read (--expires, --grace) is the command line's fault.
    return commandFailure(error instanceof KeyTermError ? new UsageError(error.message) : error, 'tollgate keys', io);
  } finally {
    await target?.close().catch(() => undefined);
  }
}
