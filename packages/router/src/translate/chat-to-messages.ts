// An OpenAI Chat Completions request rewritten as an Anthropic Messages request, or the reason it cannot be.
import { modelMaxOutputTokens } from '@tollgate/providers';
import { asArray, isObject, isUnset, parseJson, refuse } from './json.js';
import type { Json } from './json.js';

/** Chat fields that change nothing Anthropic could honour differently: dropped. */
const DROPPED_FIELDS = new Set([
  'model',
  'seed',
  'store',
  'metadata',
  'service_tier',
  'prompt_cache_key',
  'prompt_cache_retention',
  'stream_options',
]);

/** Chat fields read below. */
const READ_FIELDS = new Set([
  'messages',
  'stream',
  'max_tokens',
  'max_completion_tokens',
  'temperature',
  'top_p',
  'stop',
  'tools',
  'tool_choice',
  'parallel_tool_calls',
  'user',
  'safety_identifier',
]);

/** Chat fields that may be sent at their default value only (a non-default value asks for something Anthropic lacks). */
const DEFAULT_ONLY_FIELDS: Record<string, string> = {
  n: 'several choices (n > 1)',
  logprobs: 'log probabilities',
  top_logprobs: 'log probabilities',
  frequency_penalty: 'frequency_penalty',
  presence_penalty: 'presence_penalty',
  logit_bias: 'logit_bias',
  audio: 'audio output',
  prediction: 'predicted outputs',
  web_search_options: 'web search',
  reasoning_effort: 'reasoning_effort',
  verbosity: 'verbosity',
  functions: 'legacy functions (use tools)',
  function_call: 'legacy function_call (use tool_choice)',
};

/** Image types Anthropic accepts inline. */
const IMAGE_TYPES = new Set(['image/jpeg', 'image/png', 'image/gif', 'image/webp']);

function checkFields(body: Json): void {
  for (const [field, value] of Object.entries(body)) {
    if (DROPPED_FIELDS.has(field) || READ_FIELDS.has(field)) continue;
    const feature = DEFAULT_ONLY_FIELDS[field];
    if (feature !== undefined) {
      // n: 1 and verbosity: medium are the defaults, as are false, 0 and empty values for the others.
      if (isUnset(value) || (field === 'n' && value === 1) || (field === 'verbosity' && value === 'medium')) continue;
      refuse(`Anthropic Messages has no equivalent of ${feature}`);
    }
    if (field === 'response_format') {
      if (value === undefined || value === null || (isObject(value) && value.type === 'text')) continue;
      refuse('Anthropic Messages cannot guarantee a response_format (JSON mode or JSON schema)');
    }
    if (field === 'modalities') {
      if (asArray(value).every((modality) => modality === 'text')) continue;
      refuse('Anthropic Messages answers in text only (modalities)');
    }
    refuse(`the chat field "${field}" has no Anthropic Messages equivalent`);
  }
}

/** A chat message's content as text, for the system prompt and tool results (which take text only). */
function textOf(content: unknown, where: string): string {
  if (typeof content === 'string') return content;
  if (content === null || content === undefined) return '';
  const texts: string[] = [];
  for (const part of asArray(content)) {
    if (isObject(part) && (part.type === 'text' || part.type === 'refusal')) {
      texts.push(String(part.type === 'text' ? (part.text ?? '') : (part.refusal ?? '')));
    } else {
      refuse(`${where} may carry text only when translated to Anthropic Messages`);
    }
  }
  return texts.join('\n\n');
}

function imageBlock(part: Json): Json {
  const image = isObject(part.image_url) ? part.image_url : {};
  const url = typeof image.url === 'string' ? image.url : '';
  const inline = /^data:([^;,]+);base64,(.*)$/s.exec(url);
  if (inline) {
    const mediaType = inline[1]!.toLowerCase();
    if (!IMAGE_TYPES.has(mediaType)) refuse(`Anthropic Messages does not accept ${mediaType} images`);
    return { type: 'image', source: { type: 'base64', media_type: mediaType, data: inline[2] } };
  }
  if (/^https?:\/\//i.test(url)) return { type: 'image', source: { type: 'url', url } };
  return refuse('an image_url must be an http(s) URL or a base64 data URL');
}

/** User content as Anthropic blocks (empty text dropped: Anthropic refuses empty text blocks). */
function userBlocks(content: unknown): Json[] {
  if (typeof content === 'string') return content === '' ? [] : [{ type: 'text', text: content }];
  const blocks: Json[] = [];
  for (const part of asArray(content)) {
    if (!isObject(part)) refuse('a content part must be an object');
    if (part.type === 'text') {
      if (typeof part.text === 'string' && part.text !== '') blocks.push({ type: 'text', text: part.text });
    } else if (part.type === 'image_url') {
      blocks.push(imageBlock(part));
    } else {
      refuse(`Anthropic Messages cannot take a "${String(part.type)}" content part`);
    }
  }
  return blocks;
}

function toolArguments(call: Json, fn: Json): Json {
  const text = typeof fn.arguments === 'string' && fn.arguments.trim() !== '' ? fn.arguments : '{}';
  const input = parseJson(text);
  // Anthropic takes a tool call's input as a JSON object, never as text.
  if (!isObject(input)) refuse(`the arguments of tool call ${String(call.id)} are not a JSON object`);
  return input;
}

function assistantBlocks(message: Json): Json[] {
  const text =
    textOf(message.content, 'an assistant message') || (typeof message.refusal === 'string' ? message.refusal : '');
  const blocks: Json[] = text === '' ? [] : [{ type: 'text', text }];
  for (const call of asArray(message.tool_calls)) {
    if (!isObject(call) || call.type !== 'function' || !isObject(call.function))
      refuse('Anthropic Messages takes function tool calls only');
    if (typeof call.id !== 'string' || typeof call.function.name !== 'string')
      refuse('a tool call needs an id and a function name');
    blocks.push({ type: 'tool_use', id: call.id, name: call.function.name, input: toolArguments(call, call.function) });
  }
  return blocks;
}

interface Turn {
  role: 'user' | 'assistant';
  content: Json[];
}

/**
 * Messages, with system and developer messages lifted into the top-level `system` (Anthropic has
 * no system role), tool messages turned into `tool_result` blocks of a user turn, and consecutive
 * turns of one role merged (Anthropic wants user and assistant turns to alternate).
 */
function convertMessages(messages: unknown): { system: string[]; turns: Turn[] } {
  if (!Array.isArray(messages) || messages.length === 0) refuse('messages must be a non-empty array');
  const system: string[] = [];
  const turns: Turn[] = [];
  const add = (role: Turn['role'], content: Json[]): void => {
    if (content.length === 0) return;
    const last = turns.at(-1);
    if (last?.role === role) last.content.push(...content);
    else turns.push({ role, content });
  };
  for (const message of messages) {
    if (!isObject(message)) refuse('each message must be an object');
    switch (message.role) {
      case 'system':
      case 'developer': {
        const text = textOf(message.content, 'a system message');
        if (text !== '') system.push(text);
        break;
      }
      case 'user':
        add('user', userBlocks(message.content));
        break;
      case 'assistant':
        add('assistant', assistantBlocks(message));
        break;
      case 'tool':
        if (typeof message.tool_call_id !== 'string') refuse('a tool message needs its tool_call_id');
        add('user', [
          {
            type: 'tool_result',
            tool_use_id: message.tool_call_id,
            content: textOf(message.content, 'a tool message'),
          },
        ]);
        break;
      default:
        refuse(`Anthropic Messages has no "${String(message.role)}" role`);
    }
  }
  for (const turn of turns) {
    // Anthropic reads the tool results of a user turn only when they come before its other blocks.
    if (turn.role === 'user')
      turn.content.sort((a, b) => Number(b.type === 'tool_result') - Number(a.type === 'tool_result'));
  }
  if (turns.length === 0) refuse('Anthropic Messages needs at least one user or assistant message with content');
  return { system, turns };
}

function convertTools(tools: unknown): Json[] {
  return asArray(tools).map((tool) => {
    if (
      !isObject(tool) ||
      tool.type !== 'function' ||
      !isObject(tool.function) ||
      typeof tool.function.name !== 'string'
    ) {
      return refuse('Anthropic Messages takes function tools only');
    }
    const fn = tool.function;
    const converted: Json = {
      name: fn.name,
      input_schema: isObject(fn.parameters) ? fn.parameters : { type: 'object', properties: {} },
    };
    if (typeof fn.description === 'string') converted.description = fn.description;
    return converted;
  });
}

function convertToolChoice(choice: unknown, parallel: unknown): Json | undefined {
  let converted: Json | undefined;
  if (choice === undefined || choice === null || choice === 'auto') converted = { type: 'auto' };
  else if (choice === 'none') converted = { type: 'none' };
  else if (choice === 'required') converted = { type: 'any' };
  else if (
    isObject(choice) &&
    choice.type === 'function' &&
    isObject(choice.function) &&
    typeof choice.function.name === 'string'
  ) {
    converted = { type: 'tool', name: choice.function.name };
  } else refuse('Anthropic Messages cannot express this tool_choice');
  if (parallel === false && converted.type !== 'none') converted.disable_parallel_tool_use = true;
  // Auto with parallel calls allowed is Anthropic's default: leave it out.
  return converted.type === 'auto' && converted.disable_parallel_tool_use === undefined && choice === undefined
    ? undefined
    : converted;
}

function samplingParameters(body: Json, into: Json): void {
  if (body.temperature !== undefined && body.temperature !== null) {
    if (typeof body.temperature !== 'number' || body.temperature < 0 || body.temperature > 1) {
      refuse('Anthropic Messages takes a temperature between 0 and 1');
    }
    into.temperature = body.temperature;
  }
  if (typeof body.top_p === 'number') into.top_p = body.top_p;
  const stop = typeof body.stop === 'string' ? [body.stop] : asArray(body.stop);
  if (stop.some((sequence) => typeof sequence !== 'string')) refuse('stop must be a string or an array of strings');
  // Anthropic refuses sequences that are only whitespace; OpenAI allows them.
  if (stop.some((sequence) => (sequence as string).trim() === ''))
    refuse('Anthropic Messages refuses stop sequences made only of whitespace');
  if (stop.length > 0) into.stop_sequences = stop;
}

/**
 * Anthropic requires `max_tokens`; a chat request may leave it out, which OpenAI reads as "up to the
 * model's limit". The translation asks for the same: the target model's output limit from the catalogue.
 */
function outputCap(body: Json, targetModel: string): number {
  const cap = body.max_completion_tokens ?? body.max_tokens;
  if (cap === undefined || cap === null) return modelMaxOutputTokens(targetModel);
  if (typeof cap !== 'number' || !Number.isSafeInteger(cap) || cap < 1)
    refuse('the output cap must be a positive integer');
  return cap;
}

export function chatToMessagesRequest(body: Json, targetModel: string): Json {
  checkFields(body);
  const { system, turns } = convertMessages(body.messages);
  const request: Json = { model: targetModel, max_tokens: outputCap(body, targetModel), messages: turns };
  if (system.length === 1) request.system = system[0];
  else if (system.length > 1) request.system = system.map((text) => ({ type: 'text', text }));
  samplingParameters(body, request);
  const tools = convertTools(body.tools);
  if (tools.length > 0) {
    request.tools = tools;
    const choice = convertToolChoice(body.tool_choice, body.parallel_tool_calls);
    if (choice) request.tool_choice = choice;
  } else if (
    body.tool_choice !== undefined &&
    body.tool_choice !== null &&
    body.tool_choice !== 'none' &&
    body.tool_choice !== 'auto'
  ) {
    refuse('tool_choice asks for a tool but the request has no tools');
  }
  const user = body.safety_identifier ?? body.user;
  if (typeof user === 'string' && user !== '') request.metadata = { user_id: user };
  if (body.stream === true) request.stream = true;
  return request;
}
