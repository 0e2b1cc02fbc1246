// validateConfig and its kin: every problem of a config, each naming its field, and the clean copy when there is none.
import { z } from 'zod';
import { checkRouting } from '@tollgate/router/upstreams';
import {
  checkByOwners,
  checkChoices,
  checkModelNames,
  checkReferences,
  checkRequiredScope,
  checkToolReferences,
} from './checks.js';
import { ConfigError } from './error.js';
import { configSchema } from './schema.js';
import type { ProxyConfig } from './schema.js';
import { defaultUpstreamKind, kindTokenizer } from './upstream-schema.js';
/** An issue as sentences naming its field: `keys[0].tier ...`, `upstreams.openai.baseUrl ...`. */
function describeIssue(issue: z.core.$ZodIssue, at: readonly PropertyKey[] = []): string[] {
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
  return issue.message.split('\n').map((line) => `${fieldName(path)} ${line}`);
}

/** The issue says the value is of another kind than the schema's (a number where a name was expected). */
function isOtherKind(issue: z.core.$ZodIssue): boolean {
  if (issue.code === 'invalid_type') return true;
  return issue.code === 'invalid_value' && !issue.values.some((value) => typeof value === typeof issue.input);
}

function fieldName(path: readonly PropertyKey[]): string {
  if (path.length === 0) return 'the config';
  return path
    .map((part, i) => (typeof part === 'number' ? `[${part}]` : i === 0 ? String(part) : `.${String(part)}`))
    .join('');
}

/**
 * Validates a parsed JSON config and returns a clean copy. Throws ConfigError listing every
 * faulty field (e.g. `tiers.free.requestsPerMinute must be a positive integer`): first what the
 * schema finds, or, when the fields are sound, what names and rules across them find.
 */
export function validateConfig(input: unknown, options: ValidateOptions = {}): ProxyConfig {
  const { problems, config } = configProblems(input, options);
  if (problems.length > 0 || !config) throw new ConfigError(problems);
  VALIDATED.add(config);
  return config;
}

/** The clean copies validateConfig made: a gateway given one checks only the environment again. */
const VALIDATED = new WeakSet<object>();

/**
 * The config a gateway serves: what validateConfig returns for `config` in `env` (the same checks as the start, so
 * no door serves a config that was not validated); a clean copy validateConfig already made is checked for the
 * environment only. Throws a ConfigError listing every problem.
 */
export function servableConfig(config: unknown, env: NodeJS.ProcessEnv): ProxyConfig {
  if (typeof config !== 'object' || config === null || !VALIDATED.has(config)) return validateConfig(config, { env });
  const problems = upstreamCredentialProblems(config, env);
  if (problems.length > 0) throw new ConfigError(problems);
  return config as ProxyConfig;
}

/** What a validation checks beyond the file itself. */
export interface ValidateOptions {
  /**
   * The environment the config will run in: each upstream's `apiKeyEnv` must be set in it (else every call would go
   * upstream without credentials). Left out, the environment is not checked (a config checked on another machine).
   */
  env?: NodeJS.ProcessEnv;
}

/**
 * Every problem of a config, each naming its field: what the schema finds, or, when the fields are sound, what names
 * and rules across them find, then (with `env`) what the environment lacks. The clean copy when there is none.
 */
export function configProblems(
  input: unknown,
  options: ValidateOptions = {},
): { problems: readonly string[]; config?: ProxyConfig } {
  // reportInput: a union's branches are told apart by the kind of value they refused.
  const parsed = configSchema.safeParse(input, { reportInput: true });
  // The environment is read off the upstreams as given, so that one error lists its problems beside the file's.
  const environment = options.env ? upstreamCredentialProblems(input, options.env) : [];
  if (!parsed.success)
    return { problems: [...new Set(parsed.error.issues.flatMap((issue) => describeIssue(issue))), ...environment] };
  const config = parsed.data as ProxyConfig;
  const problems: string[] = [];
  checkChoices(config, problems);
  checkByOwners(config, problems);
  checkReferences(config, problems);
  checkModelNames(config, problems);
  checkToolReferences(config, problems);
  checkRequiredScope(config, problems);
  // Checked by the router's own option rules (routing-config.ts), so that the two never disagree.
  const routingProblem = checkRouting(config);
  if (routingProblem) problems.push(routingProblem);
  problems.push(...environment);
  if (problems.length > 0) return { problems };
  countingDefaults(config);
  return { problems, config };
}

/** An upstream whose `apiKeyEnv` names a variable that is not set would send every request without credentials. */
function upstreamCredentialProblems(input: unknown, env: NodeJS.ProcessEnv): string[] {
  const upstreams = isObject(input) && isObject(input.upstreams) ? input.upstreams : {};
  return Object.entries(upstreams).flatMap(([name, upstream]) => {
    if (!isObject(upstream) || typeof upstream.apiKeyEnv !== 'string' || upstream.apiKey !== undefined) return [];
    const value = env[upstream.apiKeyEnv];
    if (value !== undefined && value !== '') return [];
    return [
      `upstreams.${name}.apiKeyEnv names ${upstream.apiKeyEnv}, which is not set: set it, or the proxy would call ${name} without credentials`,
    ];
  });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Upstream kinds that speak OpenAI's API: their models count text with o200k_base unless they name a tokenizer. */
/**
 * A model with no `tokenizer`, served by an upstream whose kind names one (`modelTokenizer`: o200k_base for the kinds
 * that speak OpenAI's API), is estimated with it. That is not known to be its provider's own tokenizer (a self-hosted
 * Llama speaks OpenAI's API too), so the hard stop cuts it only on a lower bound (`ownTokenizer: false`); naming the
 * tokenizer declares it the provider's own.
 */
function countingDefaults(config: ProxyConfig): void {
  for (const model of Object.values(config.models ?? {})) {
    if (model.tokenizer !== undefined) continue;
    const kind = config.upstreams ? config.upstreams[model.provider]?.api : defaultUpstreamKind(model.provider);
    const tokenizer = kind === undefined ? undefined : kindTokenizer(kind);
    if (tokenizer === undefined) continue;
    Object.assign(model, { tokenizer, ownTokenizer: false });
  }
}
