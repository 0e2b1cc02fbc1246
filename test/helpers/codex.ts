// The Codex CLI (npm `@openai/codex`) for the client tests: `CODEX_BIN` when set, else installed once from npm
// (npm-cli.ts); undefined when neither works (no network), and its test fails saying so.
import { npmCli, runCli, type CliRun } from './npm-cli.js';

/** The version the tests were written against. */
export const CODEX_VERSION = '0.171.0';

/** The `codex` executable, installing it when needed; undefined when it cannot be had. */
export function findCodex(): string | undefined {
  return npmCli({ name: '@openai/codex', version: CODEX_VERSION, bin: 'codex', override: process.env.CODEX_BIN });
}

/** `codex exec <prompt>` with the built-in OpenAI provider on `baseUrl` and `apiKey`, in a fresh CODEX_HOME. */
export function codexExec(
  bin: string,
  options: { baseUrl: string; apiKey: string; model: string; prompt: string; home: string; cwd: string },
): Promise<CliRun> {
  // The built-in provider's base URL is the `openai_base_url` setting (0.171 reads no OPENAI_BASE_URL).
  const baseUrl = ['-c', `openai_base_url=${JSON.stringify(options.baseUrl)}`];
  const args = ['exec', ...baseUrl, '--skip-git-repo-check', '--sandbox', 'read-only', '-m', options.model];
  return runCli(bin, [...args, options.prompt], options.cwd, {
    HOME: options.home,
    CODEX_HOME: options.home,
    CODEX_API_KEY: options.apiKey,
    OPENAI_API_KEY: options.apiKey,
    RUST_LOG: 'warn',
  });
}
