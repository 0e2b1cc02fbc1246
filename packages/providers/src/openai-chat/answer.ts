// The chat family's answers in their forms: a plain answer as Chat Completions JSON, that JSON as its chunk stream, and a
// chunk stream assembled back into the JSON answer.
import { answerId, nowSeconds, wholeText } from '../answer-types.js';
import type { AnswerForms, PlainAnswer, SseMessage, StreamOptions } from '../answer-types.js';
import { StreamShapes } from '../chunk-shape.js';
import { asArray, isObject, parseJson } from '../json.js';
import type { Json } from '../json.js';
import { contentOpen } from './content-shape.js';

/** A plain answer as a Chat Completions answer: one choice, usage with every detail OpenAI reports. */
export function chatAnswer(answer: PlainAnswer): Json {
  const { inputTokens, outputTokens } = answer;
  return {
    id: answerId('chatcmpl-'),
    object: 'chat.completion',
    created: nowSeconds(),
    model: answer.model,
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: answer.text, refusal: null, annotations: [] },
        logprobs: null,
        finish_reason: answer.truncated ? 'length' : 'stop',
      },
    ],
    usage: {
      prompt_tokens: inputTokens,
      completion_tokens: outputTokens,
      total_tokens: inputTokens + outputTokens,
      prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
      completion_tokens_details: {
        reasoning_tokens: 0,
        audio_tokens: 0,
        accepted_prediction_tokens: 0,
        rejected_prediction_tokens: 0,
      },
    },
    service_tier: 'default',
  };
}

interface ChatStreamOptions extends StreamOptions {
  /**
   * Where the answer's usage goes: a last chunk without choices (`chunk`, what `stream_options.include_usage` asks
   * for), the chunk that finishes the answer (`inline`, a dialect that sends it unasked), or nowhere. @default 'chunk'
   */
  usage?: 'chunk' | 'inline' | 'none';
  /** Every chunk before the usage chunk says `usage: null`, as OpenAI's do when the client asked for usage. @default false */
  announceUsage?: boolean;
}

/** A Chat Completions answer as its chunk stream: per choice its role, text, refusal, tool calls and finish; usage; `[DONE]`. */
export function chatEvents(answer: Json, options: ChatStreamOptions = {}): SseMessage[] {
  const { deltas = wholeText, usage = 'chunk', announceUsage = false } = options;
  const head: Json = { id: answer.id, object: 'chat.completion.chunk', created: answer.created, model: answer.model };
  if (answer.system_fingerprint !== undefined) head.system_fingerprint = answer.system_fingerprint;
  if (answer.service_tier !== undefined) head.service_tier = answer.service_tier;
  const announced = announceUsage ? { usage: null } : {};
  const events: SseMessage[] = [];
  const chunk = (index: unknown, delta: Json, finishReason: unknown = null) =>
    events.push({
      data: { ...head, choices: [{ index, delta, logprobs: null, finish_reason: finishReason }], ...announced },
    });
  for (const raw of asArray(answer.choices)) {
    const choice = isObject(raw) ? raw : {};
    const message = isObject(choice.message) ? choice.message : {};
    const text = typeof message.content === 'string' ? message.content : null;
    const opening: Json = { role: message.role ?? 'assistant', content: text === null ? null : '' };
    if ('refusal' in message) opening.refusal = null;
    chunk(choice.index, opening);
    if (text !== null) for (const piece of deltas(text)) chunk(choice.index, { content: piece });
    if (typeof message.refusal === 'string') chunk(choice.index, { refusal: message.refusal });
    const toolCalls = asArray(message.tool_calls);
    if (toolCalls.length > 0)
      chunk(choice.index, { tool_calls: toolCalls.map((call, index) => ({ index, ...(call as Json) })) });
    chunk(choice.index, {}, choice.finish_reason);
  }
  if (answer.usage !== undefined && usage === 'inline' && events.length > 0) {
    const finishing = events.at(-1)!;
    finishing.data = { ...(finishing.data as Json), usage: answer.usage };
  } else if (answer.usage !== undefined && usage === 'chunk') {
    events.push({ data: { ...head, choices: [], usage: answer.usage } });
  }
  events.push({ data: '[DONE]' });
  return events;
}

function chatIsComplete(answer: Json): boolean {
  const choices = asArray(answer.choices);
  return (
    answer.object === 'chat.completion' &&
    choices.length > 0 &&
    choices.every((choice) => isObject(choice) && typeof choice.finish_reason === 'string')
  );
}

interface ChatToolCall {
  id?: unknown;
  type?: unknown;
  function: { name: string; arguments: string };
}

interface AssembledChoice {
  message: Json;
  toolCalls: Map<number, ChatToolCall>;
  finish: unknown;
}

/** One chunk's delta added to its choice; false when the chunk is not a choice's. */
function addChoiceDelta(choices: Map<number, AssembledChoice>, raw: unknown): boolean {
  if (!isObject(raw) || typeof raw.index !== 'number') return false;
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
  return true;
}

/** A chunk stream that ran to `[DONE]` with every choice finished, as the JSON answer; else undefined. */
function chatFromEvents(events: readonly { data: string }[]): Json | undefined {
  let answer: Json | undefined;
  let done = false;
  const choices = new Map<number, AssembledChoice>();
  // Content chunks alike but for their text are read by their shape, as the reader reads them: one parse, not each.
  const shapes = new StreamShapes<Json>();
  for (const { data } of events) {
    if (data === '[DONE]') {
      done = true;
      continue;
    }
    const open = shapes.read(data);
    if (open !== undefined) {
      // The shape's chunk with its text: one unfinished choice whose delta is that text (contentOpen).
      const choice = (shapes.chunk.choices as Json[])[0]!;
      addChoiceDelta(choices, {
        index: choice.index,
        delta: { content: open[0] },
        finish_reason: choice.finish_reason,
      });
      continue;
    }
    const chunk = parseJson(data);
    if (!isObject(chunk)) return undefined;
    const content = contentOpen(chunk);
    if (content !== undefined) shapes.take(data, chunk, content);
    answer ??= { id: chunk.id, object: 'chat.completion', created: chunk.created, model: chunk.model };
    if (chunk.system_fingerprint !== undefined) answer.system_fingerprint = chunk.system_fingerprint;
    if (chunk.service_tier !== undefined) answer.service_tier = chunk.service_tier;
    if (isObject(chunk.usage)) answer.usage = chunk.usage;
    for (const raw of asArray(chunk.choices)) if (!addChoiceDelta(choices, raw)) return undefined;
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

export const chatAnswerForms: AnswerForms = {
  isComplete: chatIsComplete,
  toEvents: (answer) => chatEvents(answer),
  fromEvents: chatFromEvents,
};
