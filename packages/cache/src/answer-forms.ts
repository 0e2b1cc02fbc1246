// A provider answer in both of its forms: a JSON answer written as the API's event stream, and a stream assembled into its JSON answer.
import { PROVIDER_APIS } from '@tollgate/core';
import type { ProviderApi } from '@tollgate/core';
import { adapterFor } from '@tollgate/providers';
import { SseDecoder } from '@tollgate/providers/kit';
import type { WireFamily } from '@tollgate/providers/kit';

/** An API whose answers the cache can store and replay in either form: one of a family it knows (see `isCachedApi`). */
export type CachedApi = ProviderApi;

type Json = Record<string, unknown>;
interface Event {
  event: string;
  data: string;
}

const isObject = (value: unknown): value is Json =>
  typeof value === 'object' && value !== null && !Array.isArray(value);
const asArray = (value: unknown): unknown[] => (Array.isArray(value) ? value : []);

function parseObject(text: string): Json | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return isObject(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

function eventsOf(stream: string): Event[] {
  const decoder = new SseDecoder();
  // A final block without its blank line is still read: the stored text ends where the answer ended.
  return decoder
    .push(Buffer.from(stream.endsWith('\n\n') ? stream : `${stream}\n\n`))
    .filter((block) => block.hasData)
    .map(({ event, data }) => ({ event, data }));
}

const dataLine = (value: unknown) => `data: ${JSON.stringify(value)}\n\n`;
const namedEvent = (type: string, value: Json) => `event: ${type}\ndata: ${JSON.stringify(value)}\n\n`;

// ---- OpenAI Chat Completions -------------------------------------------------------------

function chatIsComplete(answer: Json): boolean {
  const choices = asArray(answer.choices);
  return (
    answer.object === 'chat.completion' &&
    choices.length > 0 &&
    choices.every((choice) => isObject(choice) && typeof choice.finish_reason === 'string')
  );
}

function chatToStream(answer: Json): string {
  const head: Json = { id: answer.id, object: 'chat.completion.chunk', created: answer.created, model: answer.model };
  if (answer.system_fingerprint !== undefined) head.system_fingerprint = answer.system_fingerprint;
  if (answer.service_tier !== undefined) head.service_tier = answer.service_tier;
  const out: string[] = [];
  for (const raw of asArray(answer.choices)) {
    const choice = raw as Json;
    const message = isObject(choice.message) ? choice.message : {};
    const delta: Json = {
      role: message.role ?? 'assistant',
      content: typeof message.content === 'string' ? message.content : null,
    };
    if (typeof message.refusal === 'string') delta.refusal = message.refusal;
    out.push(dataLine({ ...head, choices: [{ index: choice.index, delta, logprobs: null, finish_reason: null }] }));
    const toolCalls = asArray(message.tool_calls);
    if (toolCalls.length > 0) {
      const calls = toolCalls.map((call, index) => ({ index, ...(call as Json) }));
      out.push(
        dataLine({
          ...head,
          choices: [{ index: choice.index, delta: { tool_calls: calls }, logprobs: null, finish_reason: null }],
        }),
      );
    }
    out.push(
      dataLine({
        ...head,
        choices: [{ index: choice.index, delta: {}, logprobs: null, finish_reason: choice.finish_reason }],
      }),
    );
  }
  // Sent whether or not the client asked for usage: the meter asked for it, reads it, and takes it out if the client did not.
  if (answer.usage !== undefined) out.push(dataLine({ ...head, choices: [], usage: answer.usage }));
  out.push('data: [DONE]\n\n');
  return out.join('');
}

interface ChatToolCall {
  id?: unknown;
  type?: unknown;
  function: { name: string; arguments: string };
}

function chatFromStream(events: Event[]): Json | undefined {
  let answer: Json | undefined;
  let done = false;
  const choices = new Map<number, { message: Json; toolCalls: Map<number, ChatToolCall>; finish: unknown }>();
  for (const { data } of events) {
    if (data === '[DONE]') {
      done = true;
      continue;
    }
    const chunk = parseObject(data);
    if (!chunk) return undefined;
    answer ??= { id: chunk.id, object: 'chat.completion', created: chunk.created, model: chunk.model };
    if (chunk.system_fingerprint !== undefined) answer.system_fingerprint = chunk.system_fingerprint;
    if (chunk.service_tier !== undefined) answer.service_tier = chunk.service_tier;
    if (isObject(chunk.usage)) answer.usage = chunk.usage;
    for (const raw of asArray(chunk.choices)) {
      if (!isObject(raw) || typeof raw.index !== 'number') return undefined;
      let choice = choices.get(raw.index);
      if (!choice) {
        choice = { message: { role: 'assistant', content: null, refusal: null }, toolCalls: new Map(), finish: null };
        choices.set(raw.index, choice);
      }
      const delta = isObject(raw.delta) ? raw.delta : {};
      if (typeof delta.role === 'string') choice.message.role = delta.role;
      if (typeof delta.content === 'string')
        choice.message.content = `${(choice.message.content as string | null) ?? ''}${delta.content}`;
      if (typeof delta.refusal === 'string')
        choice.message.refusal = `${(choice.message.refusal as string | null) ?? ''}${delta.refusal}`;
      for (const rawCall of asArray(delta.tool_calls)) {
        if (!isObject(rawCall)) continue;
        const index = typeof rawCall.index === 'number' ? rawCall.index : choice.toolCalls.size;
        let call = choice.toolCalls.get(index);
        if (!call) {
          call = { function: { name: '', arguments: '' } };
          choice.toolCalls.set(index, call);
        }
        if (rawCall.id !== undefined) call.id = rawCall.id;
        if (rawCall.type !== undefined) call.type = rawCall.type;
        const fn = isObject(rawCall.function) ? rawCall.function : {};
        if (typeof fn.name === 'string') call.function.name += fn.name;
        if (typeof fn.arguments === 'string') call.function.arguments += fn.arguments;
      }
      if (raw.finish_reason !== null && raw.finish_reason !== undefined) choice.finish = raw.finish_reason;
    }
  }
  if (!answer || !done || choices.size === 0) return undefined;
  answer.choices = [...choices.entries()]
    .sort(([a], [b]) => a - b)
    .map(([index, { message, toolCalls, finish }]) => {
      if (toolCalls.size > 0)
        message.tool_calls = [...toolCalls.entries()]
          .sort(([a], [b]) => a - b)
          .map(([, call]) => ({ id: call.id, type: call.type ?? 'function', function: call.function }));
      return { index, message, logprobs: null, finish_reason: finish };
    });
  return chatIsComplete(answer) ? answer : undefined;
}

// ---- OpenAI Responses --------------------------------------------------------------------

/** Finished, or stopped at its output cap (what the same request gets again); never failed or cut for another reason. */
function responsesIsComplete(answer: Json): boolean {
  if (answer.object !== 'response') return false;
  if (answer.status === 'completed') return true;
  return (
    answer.status === 'incomplete' &&
    isObject(answer.incomplete_details) &&
    answer.incomplete_details.reason === 'max_output_tokens'
  );
}

function responsesToStream(answer: Json): string {
  let sequence = 0;
  const out: string[] = [];
  const emit = (type: string, fields: Json) =>
    out.push(namedEvent(type, { type, sequence_number: sequence++, ...fields }));
  const started = { ...answer, status: 'in_progress', output: [], usage: null };
  emit('response.created', { response: started });
  emit('response.in_progress', { response: started });
  asArray(answer.output).forEach((raw, outputIndex) => {
    const item = raw as Json;
    const itemId = item.id;
    if (item.type === 'message') {
      emit('response.output_item.added', {
        output_index: outputIndex,
        item: { ...item, status: 'in_progress', content: [] },
      });
      asArray(item.content).forEach((rawPart, contentIndex) => {
        const part = rawPart as Json;
        const at = { item_id: itemId, output_index: outputIndex, content_index: contentIndex };
        if (part.type === 'output_text') {
          emit('response.content_part.added', { ...at, part: { ...part, text: '', annotations: [] } });
          emit('response.output_text.delta', { ...at, delta: part.text, logprobs: [] });
          emit('response.output_text.done', { ...at, text: part.text, logprobs: [] });
        } else if (part.type === 'refusal') {
          emit('response.content_part.added', { ...at, part: { ...part, refusal: '' } });
          emit('response.refusal.delta', { ...at, delta: part.refusal });
          emit('response.refusal.done', { ...at, refusal: part.refusal });
        } else {
          emit('response.content_part.added', { ...at, part });
        }
        emit('response.content_part.done', { ...at, part });
      });
    } else if (item.type === 'function_call') {
      emit('response.output_item.added', {
        output_index: outputIndex,
        item: { ...item, status: 'in_progress', arguments: '' },
      });
      emit('response.function_call_arguments.delta', {
        item_id: itemId,
        output_index: outputIndex,
        delta: item.arguments,
      });
      emit('response.function_call_arguments.done', {
        item_id: itemId,
        output_index: outputIndex,
        arguments: item.arguments,
      });
    } else {
      emit('response.output_item.added', { output_index: outputIndex, item });
    }
    emit('response.output_item.done', { output_index: outputIndex, item });
  });
  emit(answer.status === 'incomplete' ? 'response.incomplete' : 'response.completed', { response: answer });
  return out.join('');
}

function responsesFromStream(events: Event[]): Json | undefined {
  for (const { data } of events) {
    const event = parseObject(data);
    // The last event holds the whole answer, usage included.
    if ((event?.type === 'response.completed' || event?.type === 'response.incomplete') && isObject(event.response)) {
      return responsesIsComplete(event.response) ? event.response : undefined;
    }
  }
  return undefined;
}

// ---- Anthropic Messages ------------------------------------------------------------------

function messagesIsComplete(answer: Json): boolean {
  return answer.type === 'message' && typeof answer.stop_reason === 'string';
}

function messagesToStream(answer: Json): string {
  const out: string[] = [];
  const emit = (type: string, fields: Json) => out.push(namedEvent(type, { type, ...fields }));
  const usage = isObject(answer.usage) ? answer.usage : {};
  emit('message_start', {
    message: { ...answer, content: [], stop_reason: null, stop_sequence: null, usage: { ...usage, output_tokens: 0 } },
  });
  asArray(answer.content).forEach((raw, index) => {
    const block = raw as Json;
    if (block.type === 'text') {
      emit('content_block_start', { index, content_block: { ...block, text: '' } });
      emit('content_block_delta', { index, delta: { type: 'text_delta', text: block.text } });
    } else if (block.type === 'tool_use' || block.type === 'server_tool_use') {
      emit('content_block_start', { index, content_block: { ...block, input: {} } });
      emit('content_block_delta', {
        index,
        delta: { type: 'input_json_delta', partial_json: JSON.stringify(block.input ?? {}) },
      });
    } else if (block.type === 'thinking') {
      emit('content_block_start', { index, content_block: { type: 'thinking', thinking: '', signature: '' } });
      emit('content_block_delta', { index, delta: { type: 'thinking_delta', thinking: block.thinking } });
      emit('content_block_delta', { index, delta: { type: 'signature_delta', signature: block.signature } });
    } else {
      emit('content_block_start', { index, content_block: block });
    }
    emit('content_block_stop', { index });
  });
  emit('message_delta', {
    delta: { stop_reason: answer.stop_reason, stop_sequence: answer.stop_sequence ?? null },
    usage: { output_tokens: usage.output_tokens ?? 0 },
  });
  emit('message_stop', {});
  return out.join('');
}

function messagesFromStream(events: Event[]): Json | undefined {
  let answer: Json | undefined;
  let stopped = false;
  const blocks: Json[] = [];
  const partialJson = new Map<number, string>();
  for (const { data } of events) {
    const event = parseObject(data);
    if (!event) return undefined;
    if (event.type === 'message_start' && isObject(event.message)) {
      answer = { ...event.message, content: blocks };
    } else if (
      event.type === 'content_block_start' &&
      typeof event.index === 'number' &&
      isObject(event.content_block)
    ) {
      blocks[event.index] = { ...event.content_block };
    } else if (event.type === 'content_block_delta' && typeof event.index === 'number' && isObject(event.delta)) {
      const block = blocks[event.index];
      const delta = event.delta;
      if (!block) return undefined;
      if (delta.type === 'text_delta')
        block.text = `${(block.text as string | undefined) ?? ''}${delta.text as string}`;
      else if (delta.type === 'input_json_delta')
        partialJson.set(event.index, `${partialJson.get(event.index) ?? ''}${delta.partial_json as string}`);
      else if (delta.type === 'thinking_delta')
        block.thinking = `${(block.thinking as string | undefined) ?? ''}${delta.thinking as string}`;
      else if (delta.type === 'signature_delta') block.signature = delta.signature;
      else if (delta.type === 'citations_delta') block.citations = [...asArray(block.citations), delta.citation];
    } else if (event.type === 'content_block_stop' && typeof event.index === 'number') {
      const json = partialJson.get(event.index);
      const block = blocks[event.index];
      if (json !== undefined && block) {
        const input = json === '' ? {} : parseObject(json);
        if (!input) return undefined;
        block.input = input;
      }
    } else if (event.type === 'message_delta' && answer) {
      const delta = isObject(event.delta) ? event.delta : {};
      if ('stop_reason' in delta) answer.stop_reason = delta.stop_reason;
      if ('stop_sequence' in delta) answer.stop_sequence = delta.stop_sequence;
      // Cumulative counts: each replaces the last.
      if (isObject(event.usage)) answer.usage = { ...(isObject(answer.usage) ? answer.usage : {}), ...event.usage };
    } else if (event.type === 'message_stop') {
      stopped = true;
    } else if (event.type === 'error') {
      return undefined;
    }
  }
  if (!answer || !stopped) return undefined;
  return messagesIsComplete(answer) ? answer : undefined;
}

// ---- OpenAI Embeddings ---------------------------------------------------------------------

/** A list holding a vector (floats or base64) per input: embeddings are never streamed, so JSON is their one form. */
function embeddingsIsComplete(answer: Json): boolean {
  const data = asArray(answer.data);
  return (
    answer.object === 'list' &&
    data.length > 0 &&
    data.every((item) => isObject(item) && (Array.isArray(item.embedding) || typeof item.embedding === 'string'))
  );
}

// ---- By wire family -----------------------------------------------------------------------

interface AnswerForms {
  isComplete(answer: Json): boolean;
  /** Absent for a family that never streams: its answers have one form. */
  toStream?(answer: Json): string;
  fromStream?(events: Event[]): Json | undefined;
}

/** The answer forms of each family the cache knows; an API is cached by its adapter's `family`. */
const FORMS: Partial<Record<WireFamily, AnswerForms>> = {
  chat: { isComplete: chatIsComplete, toStream: chatToStream, fromStream: chatFromStream },
  responses: { isComplete: responsesIsComplete, toStream: responsesToStream, fromStream: responsesFromStream },
  messages: { isComplete: messagesIsComplete, toStream: messagesToStream, fromStream: messagesFromStream },
  embeddings: { isComplete: embeddingsIsComplete },
};

function formsOf(api: CachedApi): AnswerForms {
  const family = adapterFor(api).family;
  const forms = family && FORMS[family];
  if (!forms) throw new TypeError(`The cache keeps no answers of ${api}: check isCachedApi() first.`);
  return forms;
}

export function isCachedApi(api: string): api is CachedApi {
  if (!(PROVIDER_APIS as readonly string[]).includes(api)) return false;
  const family = adapterFor(api as ProviderApi).family;
  return family !== undefined && Object.hasOwn(FORMS, family);
}

/** The APIs whose answers the cache can store and replay in either form. */
export const CACHED_APIS: readonly CachedApi[] = PROVIDER_APIS.filter(isCachedApi);

/** A JSON answer that is whole and successful (an answer the provider finished), parsed; else undefined. */
export function completeJsonAnswer(api: CachedApi, text: string): Json | undefined {
  const answer = parseObject(text);
  return answer && formsOf(api).isComplete(answer) ? answer : undefined;
}

/** A stream that ran to its API's end, assembled into the JSON answer; undefined when it was cut or failed. */
export function streamToJson(api: CachedApi, stream: string): string | undefined {
  const answer = formsOf(api).fromStream?.(eventsOf(stream));
  return answer && JSON.stringify(answer);
}

/** A JSON answer written as the event stream the API would have sent. */
export function jsonToStream(api: CachedApi, json: string): string | undefined {
  const answer = parseObject(json);
  return answer && formsOf(api).toStream?.(answer);
}
