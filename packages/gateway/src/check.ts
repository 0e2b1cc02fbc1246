// `tollgate-gateway --check`: every problem of the config the start would serve, at once, without serving it.
import { readFileSync } from 'node:fs';
import { ConfigError, configSummary, configTextProblems, parsePort, reachabilityProblems } from './config/index.js';

/** What `--check` found: 0 when the config would serve (a one-line summary), 1 with every problem. */
interface ConfigCheck {
  code: 0 | 1;
  /** The summary (stdout) or the problems (stderr). */
  text: string;
}

/**
 * Checks the config `env.TOLLGATE_CONFIG` names as the start would (its fields, the names across them, the environment
 * it would run in, PORT), then what it names in the world: Redis answering PING, PostgreSQL a query, the price source
 * read and valid (`reachabilityProblems`, the bin's alone), without opening the stores or listening. Each problem names its field,
 * the value given and what was expected.
 */
export async function checkGatewayConfig(env: NodeJS.ProcessEnv): Promise<ConfigCheck> {
  const path = env.TOLLGATE_CONFIG;
  if (!path) return refused('the config', ['--check needs --config FILE (or TOLLGATE_CONFIG)']);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    return refused(path, [`cannot read ${path}: ${(error as Error).message}`]);
  }
  const found = configTextProblems(text, path, { env });
  const problems = [...found.problems];
  if (env.PORT) problems.push(...problemsOf(() => parsePort(env.PORT!)));
  // TOLLGATE_DATA_DIR (the bin's --data-dir) names the data directory over the config's `dataDir`, as at start.
  const config =
    found.config && (env.TOLLGATE_DATA_DIR ? { ...found.config, dataDir: env.TOLLGATE_DATA_DIR } : found.config);
  // What only the network confirms is asked once the file is sound (it names where to ask).
  if (config && problems.length === 0) problems.push(...(await reachabilityProblems(config, env)));
  if (!config || problems.length > 0) return refused(path, problems);
  return { code: 0, text: `${path} would serve: ${configSummary(config, env)}\n` };
}

function refused(source: string, problems: readonly string[]): ConfigCheck {
  const count = problems.length === 1 ? 'a problem' : `${problems.length} problems`;
  return {
    code: 1,
    text: `${source} would not serve, ${count}:\n${problems.map((problem) => `  - ${problem}`).join('\n')}\n`,
  };
}

function problemsOf(check: () => unknown): readonly string[] {
  try {
    check();
    return [];
  } catch (error) {
    if (error instanceof ConfigError) return error.issues;
    throw error;
  }
}
