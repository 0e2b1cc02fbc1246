// Hash tags and command routing on Redis Cluster: which shard a key, and so a command, belongs to.

/** The tag of keys that name no slot (a ledger's scopes without one, on one server everything): one slot for all. */
export const DEFAULT_TAG = '{ledger}';

/**
 * The hash tag of a slot (`tenant:acme` -> `{tenant:acme}`): Redis Cluster hashes only what sits
 * between the first `{` and the next `}`, so braces in the slot are escaped to keep all of it.
 */
export function slotTag(slot: string | undefined): string {
  if (slot === undefined || slot === '') return DEFAULT_TAG;
  return `{${slot.replace(/[{}%]/g, (brace) => encodeURIComponent(brace))}}`;
}

/** Commands that touch no key: any node answers them. */
const KEYLESS = new Set([
  'PING',
  'TIME',
  'INFO',
  'ECHO',
  'PUBLISH',
  'CLIENT',
  'CLUSTER',
  'COMMAND',
  'CONFIG',
  'DBSIZE',
  'SCRIPT',
  'FUNCTION',
  'ROLE',
  'LASTSAVE',
]);
/** Commands whose keys follow a key count (`EVALSHA sha numkeys key ...`). */
const COUNTED_KEYS = new Set(['EVAL', 'EVALSHA', 'EVAL_RO', 'EVALSHA_RO', 'FCALL', 'FCALL_RO']);

/**
 * The key a cluster routes `args` by: the first key of a script call, the first argument of
 * other commands, none for commands that touch no key. Multi-key commands must keep their keys
 * in one slot, as on any cluster client.
 */
export function firstKeyOf(args: readonly string[]): string | undefined {
  const name = args[0]?.toUpperCase();
  if (name === undefined || KEYLESS.has(name)) return undefined;
  if (COUNTED_KEYS.has(name)) return Number(args[2]) > 0 ? args[3] : undefined;
  return args[1];
}

/** True for `SCRIPT LOAD` / `SCRIPT FLUSH`: on a cluster every master must hear it (a script is cached per node). */
export function isForEveryNode(args: readonly string[]): boolean {
  return args[0]?.toUpperCase() === 'SCRIPT';
}
