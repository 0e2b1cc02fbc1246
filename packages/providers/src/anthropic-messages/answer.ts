// The Messages family's answers in their forms: a plain answer as an Anthropic message, that message as its event stream,
// and an event stream assembled back into the message.
import { answerId, wholeText } from '../answer-types.js';
import type { AnswerForms, PlainAnswer, SseMessage, StreamOptions } from '../answer-types.js';
import { asArray, isObject, parseJson } from '../json.js';
import type { Json } from '../json.js';

/** A plain answer as an Anthropic message: one text block, usage with the cache counts Anthropic reports. */
export function anthropicAnswer(answer: PlainAnswer): Json {
  return {
    id: answerId('msg_'),
    type: 'message',
    role: 'assistant',
    model: answer.model,
    content: [{ type: 'text', text: answer.text }],
    stop_reason: answer.truncated ? 'max_tokens' : 'end_turn',
    stop_sequence: null,
    usage: {
      input_tokens: answer.inputTokens,
      cache_creation_input_tokens: 0,
      cache_read_input_tokens: 0,
      output_tokens: answer.outputTokens,
      service_tier: 'standard',
    },
  };
}

type Emit = (type: string, fields: Json) => void;

/** The events of one content block: started empty, its content in deltas, stopped. */
function emitBlock(emit: Emit, block: Json, index: number, deltas: StreamOptions['deltas'] & {}): void {
  const start = (contentBlock: Json) => {
    emit('content_block_start', { index, content_block: contentBlock });
    // Anthropic pings once the first block has started.
    if (index === 0) emit('ping', {});
  };
  if (block.type === 'text') {
    start({ ...block, text: '' });
    for (const piece of deltas(block.text as string))
      emit('content_block_delta', { index, delta: { type: 'text_delta', text: piece } });
  } else if (block.type === 'tool_use' || block.type === 'server_tool_use') {
    start({ ...block, input: {} });
    emit('content_block_delta', {
      index,
      delta: { type: 'input_json_delta', partial_json: JSON.stringify(block.input ?? {}) },
    });
  } else if (block.type === 'thinking') {
    start({ type: 'thinking', thinking: '', signature: '' });
    emit('content_block_delta', { index, delta: { type: 'thinking_delta', thinking: block.thinking } });
    emit('content_block_delta', { index, delta: { type: 'signature_delta', signature: block.signature } });
  } else {
    start(block);
  }
  emit('content_block_stop', { index });
}

/**
 * A message as its event stream: `message_start` (no content yet, the first output token counted, as Anthropic
 * counts it), each block in deltas, then `message_delta` with the stop reason and the whole output, `message_stop`.
 */
export function anthropicEvents(answer: Json, options: StreamOptions = {}): SseMessage[] {
  const { deltas = wholeText } = options;
  const events: SseMessage[] = [];
  const emit: Emit = (type, fields) => events.push({ event: type, data: { type, ...fields } });
  const usage = isObject(answer.usage) ? answer.usage : {};
  const outputTokens = typeof usage.output_tokens === 'number' ? usage.output_tokens : 0;
  emit('message_start', {
    message: {
      ...answer,
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: { ...usage, output_tokens: Math.min(1, outputTokens) },
    },
  });
  asArray(answer.content).forEach((raw, index) => emitBlock(emit, raw as Json, index, deltas));
  // message_delta's usage is cumulative: the whole output, not an increment.
  emit('message_delta', {
    delta: { stop_reason: answer.stop_reason, stop_sequence: answer.stop_sequence ?? null },
    usage: { output_tokens: outputTokens },
  });
  emit('message_stop', {});
  return events;
}

function messagesIsComplete(answer: Json): boolean {
  return answer.type === 'message' && typeof answer.stop_reason === 'string';
}

/** One `content_block_delta` added to its block; false when it names no block. */
function addBlockDelta(blocks: Json[], partialJson: Map<number, string>, index: number, delta: Json): boolean {
  const block = blocks[index];
  if (!block) return false;
  if (delta.type === 'text_delta') block.text = `${(block.text as string | undefined) ?? ''}${delta.text as string}`;
  else if (delta.type === 'input_json_delta')
    partialJson.set(index, `${partialJson.get(index) ?? ''}${delta.partial_json as string}`);
  else if (delta.type === 'thinking_delta')
    block.thinking = `${(block.thinking as string | undefined) ?? ''}${delta.thinking as string}`;
  else if (delta.type === 'signature_delta') block.signature = delta.signature;
  else if (delta.type === 'citations_delta') block.citations = [...asArray(block.citations), delta.citation];
  return true;
}

/**
 * A stream that reached `message_stop` without an error, as the message; else undefined. A tool's input cut by the
 * output cap (`max_tokens`) is not whole JSON: it is `{}`, as the tool was not called.
 */
function messagesFromEvents(events: readonly { data: string }[]): Json | undefined {
  let answer: Json | undefined;
  let stopped = false;
  const blocks: Json[] = [];
  const partialJson = new Map<number, string>();
  const cutInputs: Json[] = [];
  for (const { data } of events) {
    const event = parseJson(data);
    if (!isObject(event)) return undefined;
    const index = event.index;
    if (event.type === 'message_start' && isObject(event.message)) {
      answer = { ...event.message, content: blocks };
    } else if (event.type === 'content_block_start' && typeof index === 'number' && isObject(event.content_block)) {
      blocks[index] = { ...event.content_block };
    } else if (event.type === 'content_block_delta' && typeof index === 'number' && isObject(event.delta)) {
      if (!addBlockDelta(blocks, partialJson, index, event.delta)) return undefined;
    } else if (event.type === 'content_block_stop' && typeof index === 'number') {
      const json = partialJson.get(index);
      const block = blocks[index];
      if (json !== undefined && block) {
        const input = json === '' ? {} : parseJson(json);
        if (isObject(input)) block.input = input;
        else cutInputs.push(block);
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
  if (cutInputs.length > 0) {
    if (answer.stop_reason !== 'max_tokens') return undefined;
    for (const block of cutInputs) block.input = {};
  }
  return messagesIsComplete(answer) ? answer : undefined;
}

export const anthropicAnswerForms: AnswerForms = {
  isComplete: messagesIsComplete,
  toEvents: (answer) => anthropicEvents(answer),
  fromEvents: messagesFromEvents,
};
