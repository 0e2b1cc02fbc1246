// An OpenAI Responses request rewritten as an Anthropic Messages request, through the chat translation (one set of rules).
import { chatToMessagesRequest } from './chat-to-messages.js';
import { asArray, isObject, isUnset, refuse } from './json.js';
import type { Json } from './json.js';

/** Responses fields that change nothing Anthropic could honour differently: dropped. */
const DROPPED_FIELDS = new Set([
  'model',
  'metadata',
  'store',
  'service_tier',
  'prompt_cache_key',
  'prompt_cache_retention',
  'stream_options',
  'truncation',
]);

const READ_FIELDS = new Set([
  'input',
  'instructions',
  'max_output_tokens',
  'temperature',
  'top_p',
  'tools',
  'tool_choice',
  'parallel_tool_calls',
  'stream',
  'user',
  'safety_identifier',
  'text',
]);

/** Responses fields that may be sent at their default value only. */
const DEFAULT_ONLY_FIELDS: Record<string, string> = {
  previous_response_id: 'previous_response_id (OpenAI keeps that conversation)',
  conversation: 'conversations stored by OpenAI',
  background: 'background responses',
  prompt: 'stored prompt templates',
  include: 'extra output (include)',
  max_tool_calls: 'max_tool_calls',
  top_logprobs: 'log probabilities',
};

function checkFields(body: Json): void {
  for (const [field, value] of Object.entries(body)) {
    if (DROPPED_FIELDS.has(field) || READ_FIELDS.has(field)) continue;
    const feature = DEFAULT_ONLY_FIELDS[field];
    if (feature !== undefined && isUnset(value)) continue;
    if (feature !== undefined) refuse(`Anthropic Messages has no equivalent of ${feature}`);
    // No effort asked for is the default; an effort would need Anthropic's extended thinking, not mapped.
    if (
      field === 'reasoning' &&
      (isUnset(value) || (isObject(value) && isUnset(value.effort) && isUnset(value.summary)))
    )
      continue;
    refuse(`the Responses field "${field}" has no Anthropic Messages equivalent`);
  }
}

/** Content parts of a message item as chat content parts. */
function chatParts(content: unknown): unknown {
  if (typeof content === 'string') return content;
  return asArray(content).map((part) => {
    if (!isObject(part)) return refuse('a content part must be an object');
    if (part.type === 'input_text' || part.type === 'output_text') return { type: 'text', text: part.text };
    if (part.type === 'refusal') return { type: 'refusal', refusal: part.refusal };
    if (part.type === 'input_image') {
      if (typeof part.image_url !== 'string')
        refuse('Anthropic Messages takes images as URLs or base64 data, not OpenAI file ids');
      return { type: 'image_url', image_url: { url: part.image_url } };
    }
    return refuse(`Anthropic Messages cannot take a "${String(part.type)}" content part`);
  });
}

/** The Responses input as chat messages: a string is one user message; items map one to one. */
function chatMessages(body: Json): Json[] {
  const messages: Json[] = [];
  if (typeof body.instructions === 'string' && body.instructions !== '')
    messages.push({ role: 'system', content: body.instructions });
  if (typeof body.input === 'string') {
    messages.push({ role: 'user', content: body.input });
    return messages;
  }
  for (const item of asArray(body.input)) {
    if (!isObject(item)) refuse('each input item must be an object');
    const type = item.type ?? 'message';
    if (type === 'message') {
      messages.push({ role: item.role, content: chatParts(item.content) });
    } else if (type === 'function_call') {
      messages.push({
        role: 'assistant',
        content: null,
        tool_calls: [{ id: item.call_id, type: 'function', function: { name: item.name, arguments: item.arguments } }],
      });
    } else if (type === 'function_call_output') {
      messages.push({ role: 'tool', tool_call_id: item.call_id, content: chatParts(item.output) });
    } else if (type === 'reasoning') {
      // OpenAI's own reasoning (often encrypted): no other provider's model can read it.
      continue;
    } else {
      refuse(`Anthropic Messages cannot take a "${String(type)}" input item`);
    }
  }
  return messages;
}

function chatTools(tools: unknown): Json[] {
  return asArray(tools).map((tool) => {
    // OpenAI's hosted tools (web and file search, code interpreter, ...) run on OpenAI's side only.
    if (!isObject(tool) || tool.type !== 'function')
      return refuse('Anthropic Messages takes function tools only, not OpenAI hosted tools');
    const fn: Json = { name: tool.name };
    if (tool.description !== undefined) fn.description = tool.description;
    if (tool.parameters !== undefined) fn.parameters = tool.parameters;
    return { type: 'function', function: fn };
  });
}

function chatToolChoice(choice: unknown): unknown {
  if (isObject(choice) && choice.type === 'function') return { type: 'function', function: { name: choice.name } };
  if (choice === undefined || typeof choice === 'string') return choice;
  return refuse('Anthropic Messages cannot express this tool_choice');
}

export function responsesToMessagesRequest(body: Json, targetModel: string): Json {
  checkFields(body);
  const chat: Json = { messages: chatMessages(body) };
  if (body.max_output_tokens !== undefined && body.max_output_tokens !== null)
    chat.max_completion_tokens = body.max_output_tokens;
  for (const field of ['temperature', 'top_p', 'parallel_tool_calls', 'user', 'safety_identifier', 'stream'] as const) {
    if (body[field] !== undefined && body[field] !== null) chat[field] = body[field];
  }
  if (body.tools !== undefined) chat.tools = chatTools(body.tools);
  const choice = chatToolChoice(body.tool_choice);
  if (choice !== undefined) chat.tool_choice = choice;
  if (isObject(body.text)) {
    if (!isUnset(body.text.verbosity) && body.text.verbosity !== 'medium')
      refuse('Anthropic Messages has no equivalent of verbosity');
    if (isObject(body.text.format)) chat.response_format = body.text.format;
  }
  return chatToMessagesRequest(chat, targetModel);
}
