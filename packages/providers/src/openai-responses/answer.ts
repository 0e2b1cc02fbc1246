// The Responses family's answers in their forms: a plain answer as a response object, that object as its event stream,
// and an event stream read back into the response object.
import { answerId, nowSeconds, wholeText } from '../answer-types.js';
import type { AnswerForms, PlainAnswer, SseMessage, StreamOptions } from '../answer-types.js';
import { asArray, isObject, parseJson } from '../json.js';
import type { Json } from '../json.js';

/** A plain answer as a finished response object, echoing the request's instructions and cap as OpenAI does. */
export function responsesAnswer(answer: PlainAnswer, request: Json): Json {
  const { inputTokens, outputTokens, truncated, text } = answer;
  return {
    id: answerId('resp_'),
    object: 'response',
    created_at: nowSeconds(),
    status: truncated ? 'incomplete' : 'completed',
    error: null,
    incomplete_details: truncated ? { reason: 'max_output_tokens' } : null,
    instructions: typeof request.instructions === 'string' ? request.instructions : null,
    max_output_tokens: typeof request.max_output_tokens === 'number' ? request.max_output_tokens : null,
    model: answer.model,
    output: [
      {
        type: 'message',
        id: answerId('msg_'),
        status: truncated ? 'incomplete' : 'completed',
        role: 'assistant',
        content: [{ type: 'output_text', text, annotations: [], logprobs: [] }],
      },
    ],
    parallel_tool_calls: true,
    previous_response_id: null,
    reasoning: { effort: null, summary: null },
    store: false,
    temperature: 1,
    text: { format: { type: 'text' } },
    tool_choice: 'auto',
    tools: [],
    top_p: 1,
    truncation: 'disabled',
    usage: {
      input_tokens: inputTokens,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: outputTokens,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: inputTokens + outputTokens,
    },
    user: null,
    metadata: {},
  };
}

type Emit = (type: string, fields: Json) => void;

/** The events of one message item: its content parts opened, their text or refusal in deltas, closed. */
function emitMessage(emit: Emit, item: Json, outputIndex: number, deltas: StreamOptions['deltas'] & {}): void {
  emit('response.output_item.added', {
    output_index: outputIndex,
    item: { ...item, status: 'in_progress', content: [] },
  });
  asArray(item.content).forEach((rawPart, contentIndex) => {
    const part = rawPart as Json;
    const at = { item_id: item.id, output_index: outputIndex, content_index: contentIndex };
    if (part.type === 'output_text') {
      emit('response.content_part.added', { ...at, part: { ...part, text: '', annotations: [] } });
      for (const piece of deltas(part.text as string))
        emit('response.output_text.delta', { ...at, delta: piece, logprobs: [] });
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
}

/** A response object as its event stream: created, each output item in deltas, then completed (or incomplete). */
export function responsesEvents(answer: Json, options: StreamOptions = {}): SseMessage[] {
  const { deltas = wholeText } = options;
  const events: SseMessage[] = [];
  const emit: Emit = (type, fields) =>
    events.push({ event: type, data: { type, sequence_number: events.length, ...fields } });
  const started = { ...answer, status: 'in_progress', incomplete_details: null, output: [], usage: null };
  emit('response.created', { response: started });
  emit('response.in_progress', { response: started });
  asArray(answer.output).forEach((raw, outputIndex) => {
    const item = raw as Json;
    if (item.type === 'message') emitMessage(emit, item, outputIndex, deltas);
    else if (item.type === 'function_call') {
      emit('response.output_item.added', {
        output_index: outputIndex,
        item: { ...item, status: 'in_progress', arguments: '' },
      });
      const at = { item_id: item.id, output_index: outputIndex };
      emit('response.function_call_arguments.delta', { ...at, delta: item.arguments });
      emit('response.function_call_arguments.done', { ...at, arguments: item.arguments });
    } else {
      emit('response.output_item.added', { output_index: outputIndex, item });
    }
    emit('response.output_item.done', { output_index: outputIndex, item });
  });
  emit(answer.status === 'incomplete' ? 'response.incomplete' : 'response.completed', { response: answer });
  return events;
}

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

/** One event of a stream applied to the output items it builds (by `output_index`), as the client's SDK builds them. */
function addOutputEvent(items: Json[], event: Json): void {
  const at = typeof event.output_index === 'number' ? event.output_index : -1;
  if (event.type === 'response.output_item.added' || event.type === 'response.output_item.done') {
    if (at >= 0 && isObject(event.item)) items[at] = { ...event.item, content: [...asArray(event.item.content)] };
    return;
  }
  const item = items[at];
  if (!item) return;
  const content = item.content as unknown[];
  const part = typeof event.content_index === 'number' ? content[event.content_index] : undefined;
  const delta = typeof event.delta === 'string' ? event.delta : '';
  if (event.type === 'response.content_part.added' && typeof event.content_index === 'number' && isObject(event.part))
    content[event.content_index] = { ...event.part };
  else if (event.type === 'response.output_text.delta' && isObject(part))
    part.text = `${String(part.text ?? '')}${delta}`;
  else if (event.type === 'response.refusal.delta' && isObject(part))
    part.refusal = `${String(part.refusal ?? '')}${delta}`;
  else if (event.type === 'response.function_call_arguments.delta')
    item.arguments = `${String(item.arguments ?? '')}${delta}`;
}

/**
 * The last event's response object (it holds the whole answer, usage included). A stream ended at its cap by a
 * gateway ends with a response that leaves `output` out (SDKs keep the items they built): they are built from the
 * events here, an item left open marked `incomplete`.
 */
function responsesFromEvents(events: readonly { data: string }[]): Json | undefined {
  const items: Json[] = [];
  for (const { data } of events) {
    const event = parseJson(data);
    if (!isObject(event)) continue;
    const type = event.type;
    if ((type === 'response.completed' || type === 'response.incomplete') && isObject(event.response)) {
      const response = event.response;
      if (!responsesIsComplete(response)) return undefined;
      if (Array.isArray(response.output)) return response;
      const output = items
        .filter((item) => isObject(item))
        .map((item) => (item.status === 'in_progress' ? { ...item, status: 'incomplete' } : item));
      return { ...response, output };
    }
    if (typeof type === 'string' && type.startsWith('response.')) addOutputEvent(items, event);
  }
  return undefined;
}

export const responsesAnswerForms: AnswerForms = {
  isComplete: responsesIsComplete,
  toEvents: (answer) => responsesEvents(answer),
  fromEvents: responsesFromEvents,
};
