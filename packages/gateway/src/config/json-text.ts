// A config file's text: JSON syntax errors named by line and column, then validation; and the file's JSON Schema.
import { parse as parseJsonLocating } from 'jsonc-parser';
import type { ParseError } from 'jsonc-parser';
import { z } from 'zod';
import { ConfigError } from './error.js';
import { configSchema } from './schema.js';
import type { GatewayConfig } from './schema.js';
import { configProblems } from './validate.js';
import type { ValidateOptions } from './validate.js';
/**
 * Where JSON.parse stopped in `text`, as an offset: the position Node's message gives (`at position 42`);
 * when it gives none (`Unexpected token '}', "..." is not valid JSON`), where a locating parser finds
 * the first error; else the end of the text.
 */
function syntaxErrorOffset(text: string, message: string): number {
  const position = /\bposition (\d+)/.exec(message);
  if (position) return Number(position[1]);
  const errors: ParseError[] = [];
  parseJsonLocating(text, errors, { disallowComments: true, allowTrailingComma: false, allowEmptyContent: false });
  return errors[0]?.offset ?? text.length;
}

/** `line 3, column 7` (both from 1) of an offset in `text`. */
function lineAndColumn(text: string, offset: number): string {
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  return `line ${line}, column ${offset - (before.lastIndexOf('\n') + 1) + 1}`;
}

/** Parses JSON text and validates it; a JSON syntax error becomes a ConfigError too, naming its line and column. */
export function parseConfig(text: string, source = 'the config', options: ValidateOptions = {}): GatewayConfig {
  const { problems, config } = configTextProblems(text, source, options);
  if (problems.length > 0 || !config) throw new ConfigError(problems);
  return config;
}

/** Every problem of a config file's text (a JSON syntax error, named by line and column, or what validation finds). */
export function configTextProblems(
  text: string,
  source = 'the config',
  options: ValidateOptions = {},
): { problems: readonly string[]; config?: GatewayConfig } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    // Node's own location words (a position, or a snippet of the text) go: the line and column say it.
    const reason = message
      .replace(/ in JSON at position \d+(?: \(line \d+ column \d+\))?$/, '')
      .replace(/, .* is not valid JSON$/s, '');
    return {
      problems: [`${source} is not valid JSON at ${lineAndColumn(text, syntaxErrorOffset(text, message))}: ${reason}`],
    };
  }
  return configProblems(parsed, options);
}

/**
 * The config file's JSON Schema (draft 2020-12), for editors: generated from the schema above, so
 * it says what the proxy accepts field by field (rules across fields are the proxy's alone).
 * `pnpm --filter @tollgate/example-proxy config-schema` writes it to tollgate.config.schema.json.
 */
export function configJsonSchemaText(): string {
  return `${JSON.stringify(z.toJSONSchema(configSchema, { target: 'draft-2020-12', io: 'input' }), null, 2)}\n`;
}
