// How OpenAI frames a prompt (messages, tool definitions, schemas): shared by every OpenAI-shaped adapter.
import type { RequestCounter } from './counter.js';
import type { ReportedUsage, TokenUsage } from '@tollgate/core';
import { asArray, asString, isObject, tokenCount } from './json.js';
import type { Json } from './json.js';
import { mapEach, mapField, withField } from './prompt-text.js';
import type { TextMap } from './prompt-text.js';
import { serviceTierOf } from './usage.js';

/**
 * OpenAI renders function definitions into the prompt as a TypeScript namespace (documented by
 * the community from measured counts); counting that rendering
 * reproduces the billed count for the usual JSON-schema subset. Unusual schema keywords render
 * as `any`, so for them the count can be a few tokens low; descriptions dominate anyway.
 */
function renderSchemaType(schema: unknown, indent: number): string {
  if (!isObject(schema)) return 'any';
  const alternatives = asArray(schema.anyOf ?? schema.oneOf);
  if (alternatives.length > 0) return alternatives.map((item) => renderSchemaType(item, indent)).join(' | ');
  const enumValues = asArray(schema.enum);
  switch (schema.type) {
    case 'string':
      return enumValues.length > 0 ? enumValues.map((value) => JSON.stringify(value)).join(' | ') : 'string';
    case 'integer':
    case 'number':
      return enumValues.length > 0 ? enumValues.map(String).join(' | ') : 'number';
    case 'boolean':
      return 'boolean';
    case 'null':
      return 'null';
    case 'array':
      return schema.items === undefined ? 'any[]' : `${renderSchemaType(schema.items, indent)}[]`;
    case 'object':
      return `{\n${renderProperties(schema, indent + 2)}\n${' '.repeat(indent)}}`;
    default:
      return 'any';
  }
}

function renderProperties(schema: Json, indent: number): string {
  const properties = isObject(schema.properties) ? schema.properties : {};
  const required = new Set(asArray(schema.required).filter((name): name is string => typeof name === 'string'));
  const pad = ' '.repeat(indent);
  const lines: string[] = [];
  for (const [name, property] of Object.entries(properties)) {
    const description = isObject(property) ? asString(property.description) : '';
    // Only top-level (and first nested) descriptions reach the prompt.
    if (description && indent < 2) lines.push(`${pad}// ${description}`);
    lines.push(`${pad}${name}${required.has(name) ? '' : '?'}: ${renderSchemaType(property, indent)},`);
  }
  return lines.join('\n');
}

interface FunctionDefinition {
  name: string;
  description: string;
  parameters: unknown;
}

function renderFunctions(functions: FunctionDefinition[]): string {
  const lines = ['namespace functions {', ''];
  for (const fn of functions) {
    if (fn.description) lines.push(`// ${fn.description}`);
    const properties = isObject(fn.parameters) && isObject(fn.parameters.properties) ? fn.parameters.properties : {};
    if (Object.keys(properties).length === 0) {
      lines.push(`type ${fn.name} = () => any;`);
    } else {
      lines.push(`type ${fn.name} = (_: {`, renderProperties(fn.parameters as Json, 0), '}) => any;');
    }
    lines.push('');
  }
  lines.push('} // namespace functions');
  return lines.join('\n');
}

/** Tools in the chat `tools` / `functions` shape or the Responses flat shape. */
export function countOpenAiTools(counter: RequestCounter, tools: unknown[]): number {
  if (tools.length === 0) return 0;
  const functions: FunctionDefinition[] = [];
  let other = 0;
  for (const tool of tools) {
    if (!isObject(tool)) continue;
    const fn = isObject(tool.function)
      ? tool.function
      : tool.type === 'function' || tool.type === undefined
        ? tool
        : undefined;
    if (fn && typeof fn.name === 'string') {
      functions.push({ name: fn.name, description: asString(fn.description), parameters: fn.parameters });
      continue;
    }
    // Built-in tools (web and file search, code interpreter, MCP...) feed their results back as input.
    if (tool.type !== 'custom') counter.pullsContent();
    other += counter.text(tool);
  }
  // 9 tokens frame the namespace block.
  return other + (functions.length > 0 ? counter.text(renderFunctions(functions)) + 9 : 0);
}

// OpenAI chat: every message costs 3 tokens of framing plus its fields; a name costs 1 more;
// every reply is primed with 3 (<|start|>assistant<|message|>).
export const MESSAGE_OVERHEAD = 3;
const NAME_OVERHEAD = 1;
export const REPLY_PRIMING = 3;
export const TOOL_CALL_OVERHEAD = 3;

export function countOpenAiContent(counter: RequestCounter, content: unknown): number {
  if (typeof content === 'string') return counter.text(content);
  let tokens = 0;
  for (const part of asArray(content)) {
    if (typeof part === 'string') {
      tokens += counter.text(part);
      continue;
    }
    if (!isObject(part)) continue;
    switch (part.type) {
      case 'text':
      case 'input_text':
      case 'output_text':
        tokens += counter.text(part.text);
        break;
      case 'refusal':
        tokens += counter.text(part.refusal);
        break;
      case 'image_url':
      case 'input_image':
        tokens += counter.image();
        break;
      default:
        // Audio and future part types: their JSON (base64 included) bounds them from above; files do not.
        tokens += counter.part(part);
    }
  }
  return tokens;
}

/** The text part types of OpenAI content (chat and Responses): what `mapOpenAiContent` passes through its map. */
const OPENAI_TEXT_PARTS: ReadonlySet<unknown> = new Set(['text', 'input_text', 'output_text']);

/** OpenAI content (a string, or parts) with its text passed through `map`, copy on write; refusals and media stay. */
export function mapOpenAiContent(content: unknown, map: TextMap): unknown {
  if (typeof content === 'string') return map(content);
  return mapEach(content, (part) => {
    if (typeof part === 'string') return map(part);
    return isObject(part) && OPENAI_TEXT_PARTS.has(part.type) && typeof part.text === 'string'
      ? withField(part, 'text', map(part.text))
      : part;
  });
}

/** A chat message's content through `map` (every role: the caller wrote the history it sends). */
export function mapChatMessage(message: unknown, map: TextMap): unknown {
  return mapField(message, 'content', (content) => mapOpenAiContent(content, map));
}

function countToolCalls(counter: RequestCounter, calls: unknown): number {
  if (!Array.isArray(calls)) return 0;
  let tokens = 0;
  for (const call of calls) {
    if (!isObject(call)) continue;
    const fn = isObject(call.function) ? call.function : call;
    tokens += counter.text(fn.name) + counter.text(fn.arguments) + TOOL_CALL_OVERHEAD;
  }
  return tokens;
}

export function countChatMessage(counter: RequestCounter, message: Json): number {
  let tokens = MESSAGE_OVERHEAD + counter.text(message.role) + countOpenAiContent(counter, message.content);
  if (typeof message.name === 'string') tokens += counter.text(message.name) + NAME_OVERHEAD;
  if (typeof message.tool_call_id === 'string') tokens += counter.text(message.tool_call_id);
  tokens += countToolCalls(counter, message.tool_calls);
  if (isObject(message.function_call)) tokens += countToolCalls(counter, [message.function_call]);
  return tokens;
}

export function countToolChoice(counter: RequestCounter, choice: unknown): number {
  if (choice === 'none') return 1;
  if (!isObject(choice)) return 0;
  const name = isObject(choice.function) ? choice.function.name : choice.name;
  return typeof name === 'string' ? counter.text(name) + 4 : 0;
}

export function countResponseFormat(counter: RequestCounter, format: unknown): number {
  // Structured outputs put the schema into the prompt; its JSON is a close upper bound.
  if (!isObject(format)) return 0;
  if (isObject(format.json_schema)) return counter.text(format.json_schema);
  if (format.type === 'json_schema') return counter.text(format.schema ?? format);
  return 0;
}

/** OpenAI chat and Responses usage objects share their shape closely enough for one mapping. */
export function openAiUsage(usage: Json): TokenUsage {
  const inputDetails = isObject(usage.prompt_tokens_details)
    ? usage.prompt_tokens_details
    : isObject(usage.input_tokens_details)
      ? usage.input_tokens_details
      : {};
  const outputDetails = isObject(usage.completion_tokens_details)
    ? usage.completion_tokens_details
    : isObject(usage.output_tokens_details)
      ? usage.output_tokens_details
      : {};
  return {
    inputTokens: tokenCount(usage.prompt_tokens ?? usage.input_tokens),
    cachedInputTokens: tokenCount(inputDetails.cached_tokens),
    // Input written to the prompt cache (Responses' `input_tokens_details.cache_write_tokens`): priced at the model's
    // cache-write price, which is its input price where OpenAI bills no more for a write (see docs/prices.md).
    cacheWriteTokens: tokenCount(inputDetails.cache_write_tokens),
    outputTokens: tokenCount(usage.completion_tokens ?? usage.output_tokens),
    reasoningTokens: tokenCount(outputDetails.reasoning_tokens),
  };
}

/** Where a whole OpenAI-shaped answer (chat or Responses) carries its usage, model and the tier that served it. */
export const OPENAI_USAGE_FIELDS: readonly string[] = ['model', 'usage', 'service_tier'];

/** The usage of a whole OpenAI-shaped answer (chat or Responses), as an SDK returns it. */
export function readOpenAiAnswer(response: unknown): ReportedUsage | undefined {
  if (!isObject(response) || !isObject(response.usage)) return undefined;
  const usage: ReportedUsage = openAiUsage(response.usage);
  if (typeof response.model === 'string') usage.model = response.model;
  const tier = serviceTierOf(response.service_tier);
  if (tier !== undefined) usage.serviceTier = tier;
  return usage;
}
