// What the schema says of a config: each issue as a sentence with its field, the value given and the rule; and the
// config without its faulty fields, so that the rules across fields run in the same pass (docs/config-check.md).
import { z } from 'zod';
import { configSchema } from './schema.js';
import type { GatewayConfig } from './schema.js';

/** How much of a refused value a problem quotes. */
const QUOTED_CHARS = 60;
/** Rounds of taking faulty fields out: a field taken out may leave its object without a required one. */
const SALVAGE_ROUNDS = 4;
/** Sections whose entries other fields name: an entry taken out is not reported again as a name pointing nowhere. */
const NAMED_SECTIONS = new Set(['tiers', 'tenants', 'models', 'upstreams', 'mcpServers', 'features', 'modelGroups']);

/** An issue as sentences naming its field and the value given: `keys[0].tier must be ...; got 5`. */
export function describeIssue(issue: z.core.$ZodIssue, at: readonly PropertyKey[] = []): string[] {
  const path = [...at, ...issue.path];
  if (issue.code === 'invalid_union') {
    // The one branch made for the value's kind (an object, a string) says what is wrong inside it.
    const matched = issue.errors.filter(
      (branch) => !branch.every((inner) => inner.path.length === 0 && isOtherKind(inner)),
    );
    if (matched.length === 1 && matched[0]!.length > 0)
      return matched[0]!.flatMap((inner) => describeIssue(inner, path));
  }
  if (issue.code === 'invalid_key')
    return [`${fieldName(path.slice(0, -1))} ${issue.issues[0]?.message ?? issue.message}`];
  // An unknown field's message names it; a value the message quotes already is not quoted twice; a rule across the
  // entries of a list or an object says which entries it means.
  const across = issue.code === 'custom' && typeof issue.input === 'object' && issue.input !== null;
  const given =
    issue.code === 'unrecognized_keys' || across || /\bgot\b/.test(issue.message) ? '' : `; ${givenValue(issue)}`;
  return issue.message.split('\n').map((line) => `${fieldName(path)} ${line}${given}`);
}

/** The value an issue refused, quoted short: `got "5"`, `got {"usd":-5}`, or that the field is missing. */
function givenValue(issue: z.core.$ZodIssue): string {
  let input = 'input' in issue ? issue.input : undefined;
  // A union told apart by one field (an upstream's `kind`) refused that field's value, not the whole object.
  if ('discriminator' in issue && typeof issue.discriminator === 'string' && typeof input === 'object' && input)
    input = (input as Record<string, unknown>)[issue.discriminator];
  if (input === undefined) return 'it is missing';
  let text: string;
  try {
    text = JSON.stringify(input) ?? String(input);
  } catch {
    text = String(input);
  }
  return `got ${text.length > QUOTED_CHARS ? `${text.slice(0, QUOTED_CHARS - 3)}...` : text}`;
}

/** The issue says the value is of another kind than the schema's (a number where a name was expected). */
function isOtherKind(issue: z.core.$ZodIssue): boolean {
  if (issue.code === 'invalid_type') return true;
  return issue.code === 'invalid_value' && !issue.values.some((value) => typeof value === typeof issue.input);
}

/** `tiers.free.models[1]`, or `the config` for the whole. */
function fieldName(path: readonly PropertyKey[]): string {
  if (path.length === 0) return 'the config';
  return path
    .map((part, i) => (typeof part === 'number' ? `[${part}]` : i === 0 ? String(part) : `.${String(part)}`))
    .join('');
}

/** The config with its faulty fields taken out, and what that took out (to keep the other problems true). */
interface Salvage {
  /** The rest of the config, sound for the schema; undefined when nothing sound is left (not an object). */
  config?: GatewayConfig;
  /** Names of entries taken out of the named sections: a field naming one is not reported as pointing nowhere. */
  dropped: Set<string>;
  /** Problems found on the rest, with the positions in arrays written back as they were in the config given. */
  restore(problem: string): string;
}

type Tree = Record<PropertyKey, unknown>;
const isTree = (value: unknown): value is Tree => typeof value === 'object' && value !== null;
/** Where an array element was taken out; arrays are closed up before the next parse. */
const TAKEN = Symbol('taken out');

/** The config without what the schema refused, so that the rules across fields can judge the rest. */
export function salvageConfig(input: unknown, issues: readonly z.core.$ZodIssue[]): Salvage {
  const dropped = new Set<string>();
  // Per array (by field name): the position each element now at i had in the config given.
  const positions = new Map<string, number[]>();
  const restore = (problem: string) => restorePositions(problem, positions);
  let current: unknown;
  try {
    current = structuredClone(input);
  } catch {
    return { dropped, restore };
  }
  for (let round = 0; round < SALVAGE_ROUNDS && isTree(current); round++) {
    for (const issue of issues) takeOut(current, issue, dropped);
    closeUpArrays(current, [], positions);
    const parsed = configSchema.safeParse(current);
    if (parsed.success) return { config: parsed.data as GatewayConfig, dropped, restore };
    issues = parsed.error.issues;
  }
  return { dropped, restore };
}

/** Takes the field an issue refused out of `root`; a field that is missing takes its object out. */
function takeOut(root: Tree, issue: z.core.$ZodIssue, dropped: Set<string>): void {
  const path = issue.path;
  const container = valueAt(root, path);
  if (issue.code === 'unrecognized_keys' && isTree(container)) {
    for (const key of issue.keys) delete container[key];
    return;
  }
  let cut = path.length;
  // A required field that is missing (or a field inside a value that is not an object) takes its object out.
  while (cut > 0 && !isTree(valueAt(root, path.slice(0, cut - 1)))) cut--;
  if (cut > 0 && valueAt(root, path.slice(0, cut)) === undefined) cut--;
  if (cut === 0) return;
  const parent = valueAt(root, path.slice(0, cut - 1)) as Tree;
  const key = path[cut - 1]!;
  // An entry of a named section, or a whole section (`"upstreams"` refused is not also missing).
  if (cut === 1 || (cut === 2 && NAMED_SECTIONS.has(String(path[0])))) dropped.add(String(key));
  if (Array.isArray(parent)) parent[key as number] = TAKEN;
  else delete parent[key];
  // A section left empty was not given empty.
  if (cut === 2 && Object.keys(parent).length === 0) dropped.add(String(path[0]));
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let value = root;
  for (const key of path) value = isTree(value) ? value[key] : undefined;
  return value;
}

/** Removes the elements taken out of every array, noting where each remaining one was in the config given. */
function closeUpArrays(node: unknown, path: PropertyKey[], positions: Map<string, number[]>): void {
  if (!isTree(node)) return;
  if (Array.isArray(node) && node.includes(TAKEN)) {
    const name = fieldName(path);
    const before = positions.get(name) ?? node.map((_, i) => i);
    const kept = node.flatMap((value, i) => (value === TAKEN ? [] : [[value, before[i] ?? i] as const]));
    node.splice(0, node.length, ...kept.map(([value]) => value));
    positions.set(
      name,
      kept.map(([, at]) => at),
    );
  }
  for (const [key, value] of Object.entries(node))
    closeUpArrays(value, [...path, Array.isArray(node) ? +key : key], positions);
}

/** `keys[0].tier ...` of the closed-up config back to `keys[1].tier ...` when keys[0] was taken out. */
function restorePositions(problem: string, positions: ReadonlyMap<string, number[]>): string {
  let restored = problem;
  for (const [name, at] of positions) {
    const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    restored = restored.replace(new RegExp(`(^|[^\\w.])${escaped}\\[(\\d+)\\]`, 'g'), (_match, before, index) => {
      return `${before}${name}[${at[Number(index)] ?? index}]`;
    });
  }
  return restored;
}
