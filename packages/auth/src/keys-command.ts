// `tollgate keys create|list|revoke|rotate|delete`: key management against a JSON config file or a Redis key store.
import { parseArgs } from 'node:util';
import type { ApiKeyRecord, KeyStore } from '@tollgate/core/kit';
import { parseDuration, TollgateError } from '@tollgate/core';
import { generateApiKey, hashApiKey } from './api-keys.js';
import { editConfigKeys, readConfigKeys } from './config-file.js';
import { configKeyFromRecord, isValidKeyId } from './config-keys.js';

/** Where the command writes its output. */
export interface KeysCommandIo {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
}

/** Exit codes: success, the operation failed (unknown id, id taken), the command line was wrong. */
const OK = 0;
const FAILED = 1;
const USAGE = 2;

const USAGE_TEXT = `Usage: tollgate keys <command> [target] [options]

Commands:
  create  --tenant <t> --user <u> --scopes <a,b> [--tier <t>] [--feature <f>] [--models <m1,m2>]
          [--expires <30d | ISO time>] [--id <name>] [--json]
          Creates a key, prints it ONCE and prints the record to store.
  list    [--json]                        Lists keys (ids and attributes, never hashes).
  revoke  <id>                            Disables a key (Redis: at once everywhere; a config file:
                                          when the app re-reads it).
  rotate  <id> [--grace <1h>] [--id <new>] [--json]
          Creates a new key with the same attributes; the old one expires after --grace
          (or stays until revoked when --grace is absent).
  delete  <id>                            Removes a key record.

Target (where records live; create without a target only prints the record):
  --config <path>                         A JSON config file; its "keys" array is edited atomically.
  --redis <url> [--prefix <p>]            A Redis key store (@tollgate/redis), prefix default "tollgate:".
`;

/** The record store a command works on: the config file or a KeyStore, behind one shape. */
interface KeyTarget {
  describe: string;
  /** When a revocation takes effect, for the message after `revoke`. */
  revokedWhen: string;
  list(): Promise<ApiKeyRecord[]>;
  findById(id: string): Promise<ApiKeyRecord | undefined>;
  /** Adds a record; false when its id is taken. */
  add(record: ApiKeyRecord): Promise<boolean>;
  /** Replaces a record by id; false when it is gone. */
  update(id: string, change: (record: ApiKeyRecord) => ApiKeyRecord): Promise<boolean>;
  /** Disables a record by id; false when it is gone. */
  revoke(id: string): Promise<boolean>;
  delete(id: string): Promise<boolean>;
  close(): Promise<void>;
}

function configTarget(path: string): KeyTarget {
  return {
    describe: path,
    // An app reads the file when it starts or reloads it; nothing here can reach it sooner.
    revokedWhen:
      'it stops working in each process that reads keys from this file once that process reloads it (the example proxy re-reads it within a second)',
    list: () => readConfigKeys(path),
    findById: async (id) => (await readConfigKeys(path)).find((record) => record.id === id),
    add: (record) =>
      editConfigKeys(
        path,
        (records) => {
          if (records.some((existing) => existing.id === record.id)) return { changed: false, records, result: false };
          return { changed: true, records: [...records, record], result: true };
        },
        { create: true },
      ),
    update: (id, change) =>
      editConfigKeys(path, (records) => {
        const index = records.findIndex((record) => record.id === id);
        if (index < 0) return { changed: false, records, result: false };
        const next = [...records];
        next[index] = change(records[index]!);
        return { changed: true, records: next, result: true };
      }),
    revoke(id) {
      return this.update(id, (record) => ({ ...record, disabled: true }));
    },
    delete: (id) =>
      editConfigKeys(path, (records) => {
        const next = records.filter((record) => record.id !== id);
        return { changed: next.length !== records.length, records: next, result: next.length !== records.length };
      }),
    close: async () => undefined,
  };
}

function storeTarget(store: KeyStore, describe: string, close: () => Promise<void>): KeyTarget {
  return {
    describe,
    revokedWhen: 'it stops working at once',
    list: () => store.list(),
    findById: (id) => store.findById(id),
    async add(record) {
      if (await store.findById(record.id)) return false;
      await store.put(record);
      return true;
    },
    async update(id, change) {
      const record = await store.findById(id);
      if (!record) return false;
      await store.put(change(record));
      return true;
    },
    // One atomic store call: a concurrent put cannot undo the revocation.
    revoke: (id) => store.disable(id),
    delete: (id) => store.delete(id),
    close,
  };
}

async function redisTarget(url: string, prefix: string): Promise<KeyTarget> {
  // Loaded on demand: only `--redis` needs a Redis client.
  const { createRedisStores } = await import('@tollgate/redis').catch((error: unknown) => {
    throw new Error(
      '--redis needs @tollgate/redis, an optional peer dependency of @tollgate/auth: npm install @tollgate/redis',
      { cause: error },
    );
  });
  // A one-shot command reads each key once: no cache, no subscriber connection.
  const stores = createRedisStores({ url, prefix, keyCache: false });
  return storeTarget(stores.keys, `Redis (prefix "${prefix}")`, () => stores.close());
}

function splitList(value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  return value
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
}

/** `--expires 30d` (from now) or an ISO time, as an ISO time. */
function expiryTime(value: string, now: number, flag: string): string {
  if (/^\d+(?:\.\d+)?\s*(ms|s|m|h|d|w)$/.test(value.trim()))
    return new Date(now + parseDuration(value, flag)).toISOString();
  const at = Date.parse(value);
  if (!Number.isFinite(at)) throw new UsageError(`${flag} must be a duration like 30d or an ISO 8601 time`);
  return new Date(at).toISOString();
}

class UsageError extends Error {}

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

/** What `list` shows of a record: everything but the hash. */
function listed(record: ApiKeyRecord, now: number) {
  const { sha256: _sha256, ...rest } = configKeyFromRecord(record);
  return { ...rest, status: status(record, now) };
}

function printCreated(
  io: KeysCommandIo,
  key: string,
  record: ApiKeyRecord,
  target: KeyTarget | undefined,
  json: boolean,
  verb: string,
): void {
  const entry = configKeyFromRecord(record);
  if (json) {
    io.stdout.write(`${JSON.stringify({ key, record: entry, storedIn: target?.describe ?? null }, null, 2)}\n`);
    return;
  }
  const who = [record.tenantId && `tenant ${record.tenantId}`, record.userId && `user ${record.userId}`]
    .filter(Boolean)
    .join(', ');
  io.stdout.write(
    [
      `${verb} API key "${record.id}"${who ? ` for ${who}` : ''}${record.scopes.length ? ` (scopes: ${record.scopes.join(' ')})` : ''}.`,
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
  user: { type: 'string' },
  scopes: { type: 'string' },
  tier: { type: 'string' },
  feature: { type: 'string' },
  models: { type: 'string' },
  expires: { type: 'string' },
  grace: { type: 'string' },
  id: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

type KeysValues = ReturnType<
  typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true; strict: true }>
>['values'];

/** One run of a command: what the command line said, and where the keys are. */
interface KeysRun {
  command: string;
  values: KeysValues;
  /** The positional arguments after the command. */
  rest: string[];
  target: KeyTarget | undefined;
  now: number;
  json: boolean;
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

async function createKey(run: KeysRun): Promise<number> {
  const { values, rest, target, now, io } = run;
  if (rest.length > 0)
    throw new UsageError(`"keys create" takes no positional arguments (got ${JSON.stringify(rest[0])})`);
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
  const models = splitList(values.models);
  if (models !== undefined) record.models = models;
  if (values.expires !== undefined) record.expiresAt = expiryTime(values.expires, now, '--expires');
  if (target && !(await target.add(record))) {
    io.stderr.write(`A key with id "${id}" already exists in ${target.describe}; choose another --id.\n`);
    return FAILED;
  }
  printCreated(io, key, record, target, run.json, 'Created');
  return OK;
}

async function listKeys(run: KeysRun): Promise<number> {
  const { now, io } = run;
  const target = needTarget(run);
  const records = await target.list();
  if (run.json) {
    io.stdout.write(
      `${JSON.stringify(
        records.map((record) => listed(record, now)),
        null,
        2,
      )}\n`,
    );
    return OK;
  }
  if (records.length === 0) {
    io.stdout.write(`No keys in ${target.describe}.\n`);
    return OK;
  }
  for (const record of records) {
    const parts = [
      record.id.padEnd(24),
      status(record, now).padEnd(8),
      `tenant=${record.tenantId ?? '-'}`,
      `user=${record.userId ?? '-'}`,
      `tier=${record.tier ?? '-'}`,
      `scopes=${record.scopes.join(',') || '-'}`,
    ];
    if (record.feature !== undefined) parts.push(`feature=${record.feature}`);
    if (record.expiresAt !== undefined) parts.push(`expires=${record.expiresAt}`);
    io.stdout.write(`${parts.join('  ')}\n`);
  }
  return OK;
}

/** `revoke` and `delete`: one key by id, told apart by what is done to it and what is said after. */
function removeKey(how: 'revoke' | 'delete'): (run: KeysRun) => Promise<number> {
  return async function removeOneKey(run: KeysRun): Promise<number> {
    const id = oneId(run);
    const target = needTarget(run);
    if (!(await target[how](id))) {
      run.io.stderr.write(`No key with id "${id}" in ${target.describe}.\n`);
      return FAILED;
    }
    run.io.stdout.write(
      how === 'revoke'
        ? `Revoked key "${id}" in ${target.describe}; ${target.revokedWhen}.\n`
        : `Deleted key "${id}" from ${target.describe}.\n`,
    );
    return OK;
  };
}

async function rotateKey(run: KeysRun): Promise<number> {
  const { values, now, io } = run;
  const oldId = oneId(run);
  const target = needTarget(run);
  const old = await target.findById(oldId);
  if (!old) {
    io.stderr.write(`No key with id "${oldId}" in ${target.describe}.\n`);
    return FAILED;
  }
  const id = checkedId(values.id ?? defaultId(old.tenantId, old.userId));
  // Read before anything is stored: a bad --grace after the add would leave a key nobody was shown.
  const graceEnd =
    values.grace === undefined ? undefined : new Date(now + parseDuration(values.grace, '--grace')).toISOString();
  const key = generateApiKey();
  const { disabled: _disabled, expiresAt: _expiresAt, ...attributes } = old;
  const record: ApiKeyRecord = {
    ...attributes,
    id,
    sha256: hashApiKey(key),
    createdAt: new Date(now).toISOString(),
  };
  if (values.expires !== undefined) record.expiresAt = expiryTime(values.expires, now, '--expires');
  if (!(await target.add(record))) {
    io.stderr.write(`A key with id "${id}" already exists in ${target.describe}; choose another --id.\n`);
    return FAILED;
  }
  if (graceEnd !== undefined) {
    await target.update(oldId, (previous) => ({
      ...previous,
      expiresAt:
        previous.expiresAt !== undefined && Date.parse(previous.expiresAt) < Date.parse(graceEnd)
          ? previous.expiresAt
          : graceEnd,
    }));
  }
  printCreated(io, key, record, target, run.json, `Rotated "${oldId}" to new`);
  if (!run.json) {
    io.stdout.write(
      values.grace !== undefined
        ? `The old key "${oldId}" keeps working until the grace period ends.\n`
        : `The old key "${oldId}" keeps working until you run "keys revoke ${oldId}".\n`,
    );
  }
  return OK;
}

const COMMANDS: Readonly<Record<string, (run: KeysRun) => Promise<number>>> = {
  create: createKey,
  list: listKeys,
  revoke: removeKey('revoke'),
  delete: removeKey('delete'),
  rotate: rotateKey,
};

/** Where the keys are: a config file, a Redis, or nowhere yet (`create` prints the record to add). */
async function openTarget(values: KeysValues): Promise<KeyTarget | undefined> {
  if (values.prefix !== undefined && values.redis === undefined)
    throw new UsageError('--prefix only applies with --redis');
  if (values.config !== undefined) return configTarget(values.config);
  if (values.redis !== undefined) return redisTarget(values.redis, values.prefix ?? 'tollgate:');
  return undefined;
}

/** What a failed command prints, and its exit code. */
function failure(error: unknown, command: string, io: KeysCommandIo): number {
  if (error instanceof UsageError) {
    io.stderr.write(`${error.message}\n\n${USAGE_TEXT}`);
    return USAGE;
  }
  if (error instanceof TollgateError) {
    io.stderr.write(`${error.message}\n`);
    return error.code === 'ERR_TG_CORE_INVALID_DURATION' ? USAGE : FAILED;
  }
  io.stderr.write(`keys ${command}: ${error instanceof Error ? error.message : String(error)}\n`);
  return FAILED;
}

/**
 * Runs `keys <command> ...` (the leading `keys` is optional) and returns the exit code:
 * 0 done, 1 the operation failed, 2 the command line was wrong. Never prints a key except
 * the new one on `create`/`rotate`, and never prints hashes in `list`.
 */
export async function runKeysCommand(
  argv: string[],
  io: KeysCommandIo = { stdout: process.stdout, stderr: process.stderr },
): Promise<number> {
  const args = argv[0] === 'keys' ? argv.slice(1) : argv;
  let parsed;
  try {
    parsed = parseArgs({ args, allowPositionals: true, strict: true, options: OPTIONS });
  } catch (error) {
    io.stderr.write(`${(error as Error).message}\n\n${USAGE_TEXT}`);
    return USAGE;
  }
  const { values, positionals } = parsed;
  const [command, ...rest] = positionals;
  if (values.help || command === undefined || command === 'help') {
    (values.help || command === 'help' ? io.stdout : io.stderr).write(USAGE_TEXT);
    return values.help || command === 'help' ? OK : USAGE;
  }
  if (values.config !== undefined && values.redis !== undefined) {
    io.stderr.write('Give --config or --redis, not both.\n');
    return USAGE;
  }
  let target: KeyTarget | undefined;
  try {
    target = await openTarget(values);
    const run = COMMANDS[command];
    if (!Object.hasOwn(COMMANDS, command) || !run) throw new UsageError(`Unknown command "${command}".`);
    return await run({ command, values, rest, target, now: Date.now(), json: values.json === true, io });
  } catch (error) {
    return failure(error, command, io);
  } finally {
    await target?.close().catch(() => undefined);
  }
}
