// validateConfig and its kin: every problem of a config, each naming its field, and the clean copy when there is none.
import { checkRouting } from '@tollgate/router/upstreams';
import {
  checkUpstreams,
  checkByOwners,
  checkChoices,
  checkModelNames,
  checkReferences,
  checkRequiredScope,
  checkToolReferences,
} from './checks.js';
import { ConfigError } from './error.js';
import { configSchema } from './schema.js';
import type { GatewayConfig } from './schema.js';
import { guardOptions } from './guard-options.js';
import { mcpOptions } from './mcp-options.js';
import { meteringOptions } from './metering-options.js';
import { describeIssue, salvageConfig } from './shape.js';
import { defaultUpstreamKind, httpUpstreams, kindTokenizer } from './upstream-schema.js';
/**
 * Validates a parsed JSON config and returns a clean copy. Throws ConfigError listing every problem at once, each
 * naming its field, the value given and what was expected (e.g. `tiers.free.requestsPerMinute must be a positive
 * integer; got 0`): what the schema finds, what names and rules across the fields find, and (with `env`) what the
 * environment lacks.
 */
export function validateConfig(input: unknown, options: ValidateOptions = {}): GatewayConfig {
  const { problems, config } = configProblems(input, options);
  if (problems.length > 0 || !config) throw new ConfigError(problems);
  return config;
}

/**
 * The config a gateway serves: what validateConfig returns for `config` in `env`, whatever it is given (a config
 * validateConfig returned and changed since is judged as it is now; the gateway keeps its own copy). Throws a
 * ConfigError listing every problem.
 */
export function servableConfig(config: unknown, env: NodeJS.ProcessEnv): GatewayConfig {
  return validateConfig(config, { env });
}

/** What a validation checks beyond the file itself. */
export interface ValidateOptions {
  /**
   * The environment the config will run in: each variable the config names (`apiKeyEnv`, webhook secrets, MCP
   * headers, Stripe's key) must be set in it. Left out, the environment is not checked (a config checked on another
   * machine).
   */
  env?: NodeJS.ProcessEnv;
}

/**
 * Every problem of a config in one pass, each naming its field: what the schema finds; what names and rules across
 * the fields find, on the fields the schema kept (a field it refused is taken out first, and a name pointing at an
 * entry taken out is not reported twice); then (with `env`) what the environment lacks. The clean copy when there is
 * none.
 */
export function configProblems(
  input: unknown,
  options: ValidateOptions = {},
): { problems: readonly string[]; config?: GatewayConfig } {
  // reportInput: a union's branches are told apart by the kind of value they refused, and each problem quotes it.
  const parsed = configSchema.safeParse(input, { reportInput: true });
  // The upstreams' credentials are read off the file as given, so that they are judged even beside a broken field.
  const credentials = options.env ? upstreamCredentialProblems(input, options.env) : [];
  if (parsed.success) {
    const config = parsed.data as GatewayConfig;
    const problems = [...acrossFields(config), ...credentials, ...environmentProblems(config, options.env)];
    if (problems.length > 0) return { problems };
    countingDefaults(config);
    return { problems, config };
  }
  const shape = [...new Set(parsed.error.issues.flatMap((issue) => describeIssue(issue)))];
  const rest = salvageConfig(input, parsed.error.issues);
  const across = rest.config
    ? [...acrossFields(rest.config), ...environmentProblems(rest.config, options.env)]
        .filter((problem) => ![...rest.dropped].some((name) => problem.includes(`"${name}"`)))
        .map(rest.restore)
    : [];
  return { problems: [...shape, ...across, ...credentials] };
}

/** What names and rules across a config's fields find (the fields themselves sound). */
function acrossFields(config: GatewayConfig): string[] {
  const problems: string[] = [];
  checkUpstreams(config, problems);
  checkChoices(config, problems);
  checkByOwners(config, problems);
  checkReferences(config, problems);
  checkModelNames(config, problems);
  checkToolReferences(config, problems);
  checkRequiredScope(config, problems);
  // Checked by the router's own option rules (routing-config.ts), so that the two never disagree.
  const routingProblem = checkRouting({ ...config, upstreams: httpUpstreams(config.upstreams) });
  if (routingProblem) problems.push(routingProblem);
  return problems;
}

/**
 * What the environment lacks for the parts' options (webhook secrets, MCP headers, Stripe's key and spool): each
 * translator's own reading of `env`, the one the start makes (gateway-options.ts), so that the two never disagree.
 */
function environmentProblems(config: GatewayConfig, env: NodeJS.ProcessEnv | undefined): string[] {
  if (!env) return [];
  const problems: string[] = [];
  for (const translate of [meteringOptions, guardOptions, mcpOptions]) {
    try {
      translate(config, env);
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      problems.push(...error.issues);
    }
  }
  return problems;
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

/**
 * A model with no `tokenizer`, served by an upstream whose kind names one (`modelTokenizer`: o200k_base for the kinds
 * that speak OpenAI's API), is estimated with it. That is not known to be its provider's own tokenizer (a self-hosted
 * Llama speaks OpenAI's API too), so the hard stop cuts it only on a lower bound (`ownTokenizer: false`); naming the
 * tokenizer declares it the provider's own.
 */
function countingDefaults(config: GatewayConfig): void {
  for (const model of Object.values(config.models ?? {})) {
    if (model.tokenizer !== undefined) continue;
    const upstreams = httpUpstreams(config.upstreams);
    const kind = upstreams ? upstreams[model.provider]?.api : defaultUpstreamKind(model.provider);
    const tokenizer = kind === undefined ? undefined : kindTokenizer(kind);
    if (tokenizer === undefined) continue;
    Object.assign(model, { tokenizer, ownTokenizer: false });
  }
}
