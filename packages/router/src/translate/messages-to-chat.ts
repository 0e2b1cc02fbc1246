// An Anthropic Messages request rewritten as an OpenAI Chat Completions request, or the reason it cannot be.
import { asArray, isObject, isUnset, refuse } from './json.js';
import type { Json } from './json.js';

/** Messages fields that change nothing an OpenAI-shaped server could honour differently: dropped. */
const DROPPED_FIELDS = new Set(['model', 'service_tier']);

const READ_FIELDS = new Set([
  'messages',
  'system',
  'max_tokens',
  'temperature',
  'top_p',
  'top_k',
  'stop_sequences',
  'stream',
  'tools',
  'tool_choice',
  'metadata',
]);

/** OpenAI allows at most this many stop sequences. */
const MAX_STOP_SEQUENCES = 4;

/** The chat API a request goes to: OpenAI itself, or a self-hosted server speaking its wire format. */
export type ChatTarget = 'openai.chat' | 'openai.compatible';

function checkFields(body: Json, target: ChatTarget): void {
  for (const [field, value] of Object.entries(body)) {
    if (DROPPED_FIELDS.has(field) || READ_FIELDS.has(field)) continue;
    if (field === 'thinking' && (isUnset(value) || (isObject(value) && value.type === 'disabled'))) continue;
    refuse(
      `the Messages field "${field}" has no ${target === 'openai.chat' ? 'OpenAI' : 'OpenAI-compatible'} chat equivalent`,
    );
  }
  // Self-hosted servers (vLLM, llama.cpp, SGLang) read top_k; OpenAI itself has none.
  if (target === 'openai.chat' && body.top_k !== undefined && body.top_k !== null) refuse('OpenAI chat has no top_k');
}

function blocksOf(content: unknown): unknown[] {
  return typeof content === 'string' ? [{ type: 'text', text: content }] : asArray(content);
}

function imagePart(block: Json): Json {
  const source = isObject(block.source) ? block.source : {};
  if (source.type === 'base64' && typeof source.media_type === 'string' && typeof source.data === 'string') {
    return { type: 'image_url', image_url: { url: `data:${source.media_type};base64,${source.data}` } };
  }
  if (source.type === 'url' && typeof source.url === 'string')
    return { type: 'image_url', image_url: { url: source.url } };
  return refuse('OpenAI chat takes images as base64 data or URLs only (not uploaded file ids)');
}

/** A tool result's content as text: OpenAI's tool messages carry text only. */
function toolResultText(block: Json): string {
  const texts: string[] = [];
  for (const part of blocksOf(block.content)) {
    if (!isObject(part) || part.type !== 'text') refuse('OpenAI chat tool results carry text only');
    texts.push(String(part.text ?? ''));
  }
  const text = texts.join('\n\n');
  // OpenAI has no error flag on tool results: the model is told in the text instead.
  return block.is_error === true ? `Error: ${text}` : text;
}

/** A user turn: its tool results become tool messages (answering the previous assistant turn first), the rest one user message. */
function userMessages(content: unknown): Json[] {
  const messages: Json[] = [];
  const parts: Json[] = [];
  for (const block of blocksOf(content)) {
    if (!isObject(block)) refuse('a content block must be an object');
    if (block.type === 'tool_result') {
      if (typeof block.tool_use_id !== 'string') refuse('a tool_result needs its tool_use_id');
      messages.push({ role: 'tool', tool_call_id: block.tool_use_id, content: toolResultText(block) });
    } else if (block.type === 'text') {
      parts.push({ type: 'text', text: String(block.text ?? '') });
    } else if (block.type === 'image') {
      parts.push(imagePart(block));
    } else {
      refuse(`OpenAI chat cannot take a "${String(block.type)}" block`);
    }
  }
  if (parts.length > 0) {
    const onlyText = parts.every((part) => part.type === 'text');
    messages.push({ role: 'user', content: onlyText && parts.length === 1 ? parts[0]!.text : parts });
  }
  return messages;
}

function assistantMessage(content: unknown): Json | undefined {
  const texts: string[] = [];
  const toolCalls: Json[] = [];
  for (const block of blocksOf(content)) {
    if (!isObject(block)) refuse('a content block must be an object');
    if (block.type === 'text') texts.push(String(block.text ?? ''));
    else if (block.type === 'tool_use') {
      if (typeof block.id !== 'string' || typeof block.name !== 'string')
        refuse('a tool_use block needs an id and a name');
      toolCalls.push({
        type: 'function',
        id: block.id,
        function: { name: block.name, arguments: JSON.stringify(block.input ?? {}) },
      });
    } else if (block.type === 'thinking' || block.type === 'redacted_thinking') {
      // Earlier reasoning is Anthropic's own (signed); another provider's model cannot read it, and loses nothing the answer said.
      continue;
    } else refuse(`OpenAI chat cannot take a "${String(block.type)}" block`);
  }
  const text = texts.join('');
  if (text === '' && toolCalls.length === 0) return undefined;
  const message: Json = { role: 'assistant', content: text === '' ? null : text };
  if (toolCalls.length > 0) message.tool_calls = toolCalls;
  return message;
}

function systemMessage(system: unknown): Json | undefined {
  if (system === undefined || system === null) return undefined;
  if (typeof system === 'string') return system === '' ? undefined : { role: 'system', content: system };
  const texts = asArray(system).map((block) => {
    if (!isObject(block) || block.type !== 'text') return refuse('the system prompt must be text');
    return String(block.text ?? '');
  });
  return texts.length === 0 ? undefined : { role: 'system', content: texts.join('\n\n') };
}

function convertMessages(body: Json): Json[] {
  if (!Array.isArray(body.messages) || body.messages.length === 0) refuse('messages must be a non-empty array');
  const messages: Json[] = [];
  const system = systemMessage(body.system);
  if (system) messages.push(system);
  for (const message of body.messages) {
    if (!isObject(message)) refuse('each message must be an object');
    if (message.role === 'user') messages.push(...userMessages(message.content));
    else if (message.role === 'assistant') {
      const converted = assistantMessage(message.content);
      if (converted) messages.push(converted);
    } else refuse(`OpenAI chat has no "${String(message.role)}" turn in messages`);
  }
  return messages;
}

function convertTools(tools: unknown): Json[] {
  return asArray(tools).map((tool) => {
    // Anthropic's own tools (web search, bash, code execution, ...) run on Anthropic's side only.
    if (!isObject(tool) || (tool.type !== undefined && tool.type !== 'custom') || typeof tool.name !== 'string') {
      return refuse('OpenAI chat takes client tools only, not Anthropic server tools');
    }
    const fn: Json = {
      name: tool.name,
      parameters: isObject(tool.input_schema) ? tool.input_schema : { type: 'object', properties: {} },
    };
    if (typeof tool.description === 'string') fn.description = tool.description;
    return { type: 'function', function: fn };
  });
}

function convertToolChoice(choice: unknown, into: Json): void {
  if (choice === undefined || choice === null) return;
  if (!isObject(choice)) refuse('tool_choice must be an object');
  if (choice.type === 'auto') into.tool_choice = 'auto';
  else if (choice.type === 'any') into.tool_choice = 'required';
  else if (choice.type === 'none') into.tool_choice = 'none';
  else if (choice.type === 'tool' && typeof choice.name === 'string')
    into.tool_choice = { type: 'function', function: { name: choice.name } };
  else refuse('OpenAI chat cannot express this tool_choice');
  if (choice.disable_parallel_tool_use === true) into.parallel_tool_calls = false;
}

export function messagesToChatRequest(body: Json, target: ChatTarget, targetModel: string): Json {
  checkFields(body, target);
  const request: Json = { model: targetModel, messages: convertMessages(body) };
  if (body.max_tokens !== undefined) {
    if (typeof body.max_tokens !== 'number' || !Number.isSafeInteger(body.max_tokens) || body.max_tokens < 1)
      refuse('max_tokens must be a positive integer');
    // OpenAI's current field; self-hosted servers read the older one.
    request[target === 'openai.chat' ? 'max_completion_tokens' : 'max_tokens'] = body.max_tokens;
  }
  if (typeof body.temperature === 'number') request.temperature = body.temperature;
  if (typeof body.top_p === 'number') request.top_p = body.top_p;
  if (typeof body.top_k === 'number') request.top_k = body.top_k;
  const stop = asArray(body.stop_sequences);
  if (stop.length > MAX_STOP_SEQUENCES) refuse(`OpenAI chat takes at most ${MAX_STOP_SEQUENCES} stop sequences`);
  if (stop.length > 0) request.stop = stop;
  const tools = convertTools(body.tools);
  if (tools.length > 0) {
    request.tools = tools;
    convertToolChoice(body.tool_choice, request);
  }
  if (isObject(body.metadata) && typeof body.metadata.user_id === 'string') request.user = body.metadata.user_id;
  if (body.stream === true) {
    request.stream = true;
    // An Anthropic stream reports usage; an OpenAI stream does only when asked.
    request.stream_options = { include_usage: true };
  }
  return request;
}
