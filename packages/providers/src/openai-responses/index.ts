// OpenAI Responses (`POST /v1/responses`): request shape, estimate, usage, and the ending of a cut stream.
import type { TokenUsage } from '@tollgate/core';
import type { CallRequest, CallShape } from '@tollgate/core/provider-call';
import type { ProviderAdapter } from '../adapter.js';
import type { RequestCounter } from '../counter.js';
import { asArray, bodyModel, isObject, parseJson, positiveInteger } from '../json.js';
import type { Json } from '../json.js';
import { OPENAI_UPSTREAM } from '../openai-chat/upstreams.js';
import {
  countChatMessage,
  countOpenAiContent,
  countOpenAiTools,
  countResponseFormat,
  countToolChoice,
  mapChatMessage,
  mapOpenAiContent,
  MESSAGE_OVERHEAD,
  openAiUsage,
  OPENAI_USAGE_FIELDS,
  readOpenAiAnswer,
  REPLY_PRIMING,
  TOOL_CALL_OVERHEAD,
} from '../openai-framing.js';
import { mapEach, mapField, mapString, withField } from '../prompt-text.js';
import type { TextMap } from '../prompt-text.js';
import { checkPositiveInteger } from '../request-checks.js';
import { countedOutput, OutputText, serviceTierOf, sseEvent, withServiceTier } from '../usage.js';
import type { UsageReader } from '../usage.js';

function countResponsesItem(counter: RequestCounter, item: unknown): number {
  if (typeof item === 'string') return MESSAGE_OVERHEAD + counter.text('user') + counter.text(item);
  if (!isObject(item)) return 0;
  switch (item.type) {
    case undefined:
    case 'message':
      return countChatMessage(counter, item);
    case 'function_call':
    case 'custom_tool_call':
      return (
        MESSAGE_OVERHEAD + counter.text(item.name) + counter.text(item.arguments ?? item.input) + TOOL_CALL_OVERHEAD
      );
    case 'function_call_output':
    case 'custom_tool_call_output':
      return (
        MESSAGE_OVERHEAD +
        counter.text(item.call_id) +
        (typeof item.output === 'string' ? counter.text(item.output) : countOpenAiContent(counter, item.output))
      );
    case 'reasoning':
      return (
        MESSAGE_OVERHEAD +
        asArray(item.summary).reduce<number>((sum, part) => sum + (isObject(part) ? counter.text(part.text) : 0), 0) +
        counter.text(item.encrypted_content)
      );
    case 'item_reference':
      counter.pullsContent();
      return MESSAGE_OVERHEAD + counter.text(item);
    default:
      return MESSAGE_OVERHEAD + counter.part(item);
  }
}

function countResponsesRequest(counter: RequestCounter, body: Json): number {
  let tokens = REPLY_PRIMING;
  if (typeof body.instructions === 'string' && body.instructions.length > 0)
    tokens += MESSAGE_OVERHEAD + counter.text('system') + counter.text(body.instructions);
  if (typeof body.input === 'string') tokens += countResponsesItem(counter, body.input);
  else for (const item of asArray(body.input)) tokens += countResponsesItem(counter, item);
  tokens += countOpenAiTools(counter, asArray(body.tools));
  tokens += countToolChoice(counter, body.tool_choice);
  if (isObject(body.text)) tokens += countResponseFormat(counter, body.text.format);
  // The earlier turns of a stored response or conversation, and a stored prompt, are billed as input.
  if (body.previous_response_id !== undefined || body.conversation !== undefined || body.prompt !== undefined)
    counter.pullsContent();
  return counter.approximate(tokens);
}

/** One input item's caller-written text through `map`: a message's content, a tool's output; calls and reasoning stay. */
function mapResponsesItem(item: unknown, map: TextMap): unknown {
  if (typeof item === 'string') return map(item);
  if (!isObject(item)) return item;
  switch (item.type) {
    case undefined:
    case 'message':
      return mapChatMessage(item, map);
    case 'function_call_output':
    case 'custom_tool_call_output':
      return mapField(item, 'output', (output) => mapOpenAiContent(output, map));
    default:
      return item;
  }
}

/** The instructions and every input item's text through `map` (see `ProviderAdapter.mapPromptText`). */
function mapResponsesPromptText(body: Json, map: TextMap): Json {
  const withInstructions = withField(body, 'instructions', mapString(body.instructions, map));
  const input = body.input;
  return withField(
    withInstructions,
    'input',
    typeof input === 'string' ? map(input) : mapEach(input, (item) => mapResponsesItem(item, map)),
  );
}

const RESPONSE_DONE = new Set(['response.completed', 'response.incomplete', 'response.failed']);
/** Where a terminal event holds the answer's usage. */
const TERMINAL_USAGE_PATH = ['response', 'usage'] as const;

function collectResponsesOutput(output: OutputText, items: unknown): void {
  for (const item of asArray(items)) {
    if (!isObject(item)) continue;
    for (const part of asArray(item.content)) if (isObject(part)) output.add(part.text ?? part.refusal);
    for (const part of asArray(item.summary)) if (isObject(part)) output.add(part.text);
    output.add(item.arguments);
    output.add(item.input);
  }
}

function createResponsesReader(): UsageReader {
  const output = new OutputText();
  let usage: TokenUsage | undefined;
  let tier: string | undefined;
  /** The latest lifecycle snapshot (response.created / in_progress): the ending reports on it. */
  let snapshot: Json | undefined;
  let sequence = -1;
  const readResponse = (response: unknown) => {
    if (!isObject(response)) return;
    if (typeof response.model === 'string') reader.model = response.model;
    tier = serviceTierOf(response.service_tier) ?? tier;
    if (isObject(response.usage)) usage = openAiUsage(response.usage);
  };
  const reader: UsageReader = {
    api: 'openai.responses',
    model: undefined,
    output,
    finalUsageAt: undefined,
    onEvent(event, data) {
      reader.finalUsageAt = undefined;
      const payload = parseJson(data);
      if (!isObject(payload)) return false;
      if (typeof payload.sequence_number === 'number') sequence = payload.sequence_number;
      const type = typeof payload.type === 'string' ? payload.type : event;
      if (type.endsWith('.delta')) output.add(payload.delta);
      else if (type === 'response.created' || type === 'response.in_progress' || RESPONSE_DONE.has(type)) {
        if (isObject(payload.response)) snapshot = payload.response;
        readResponse(payload.response);
        if (RESPONSE_DONE.has(type) && isObject(payload.response) && isObject(payload.response.usage))
          reader.finalUsageAt = TERMINAL_USAGE_PATH;
      }
      return false;
    },
    onJson(body) {
      if (!isObject(body)) return;
      readResponse(body);
      if (!usage) collectResponsesOutput(output, body.output);
    },
    onUnparsed: (text) => output.add(text),
    result: (countOutput) =>
      withServiceTier(usage ? { usage, source: 'provider' } : countedOutput(output, countOutput), tier),
    ending({ inputTokens, outputTokens }) {
      // Without `output`, SDKs keep the items the stream built so far (they are the answer, cut).
      const response: Json = Object.assign(
        {},
        snapshot ?? { id: 'resp_tollgate', object: 'response', model: reader.model ?? '' },
      );
      delete response.output;
      response.status = 'incomplete';
      response.incomplete_details = { reason: 'max_output_tokens' };
      response.usage = {
        input_tokens: inputTokens,
        input_tokens_details: { cached_tokens: 0 },
        output_tokens: outputTokens,
        output_tokens_details: { reasoning_tokens: 0 },
        total_tokens: inputTokens + outputTokens,
      };
      return sseEvent({ type: 'response.incomplete', sequence_number: sequence + 1, response }, 'response.incomplete');
    },
  };
  return reader;
}

/** OpenAI Responses. */
export const openAiResponses: ProviderAdapter = {
  api: 'openai.responses',
  provider: 'openai',
  genAi: { operation: 'chat', provider: 'openai' },
  read({ body }: CallRequest): CallShape {
    const record = isObject(body) ? body : {};
    return {
      model: bodyModel(body),
      outputCap: positiveInteger(record.max_output_tokens),
      stream: record.stream === true,
      choices: 1,
      serviceTier: serviceTierOf(record.service_tier),
    };
  },
  writeOutputCap(body, cap) {
    body.max_output_tokens = cap;
  },
  writeModel(body, model) {
    body.model = model;
  },
  readUsage: readOpenAiAnswer,
  endUserField: 'user',
  answerUsageFields: OPENAI_USAGE_FIELDS,
  usageField: 'usage',
  countInput: countResponsesRequest,
  mapPromptText: mapResponsesPromptText,
  // Responses streams always end with their usage.
  requestStreamUsage: () => false,
  streamRequest: (body) => Object.assign({}, body, { stream: true }),
  createReader: () => createResponsesReader(),
  label: 'OpenAI',
  family: 'responses',
  route: { path: '/v1/responses' },
  upstream: { ...OPENAI_UPSTREAM, path: '/responses' },
  checkRequest(body) {
    const input = body.input;
    if (typeof input !== 'string' && !Array.isArray(input))
      return { param: 'input', message: 'input must be a string or an array of input items.' };
    if (body.instructions !== undefined && body.instructions !== null && typeof body.instructions !== 'string')
      return { param: 'instructions', message: 'instructions must be a string.' };
    return checkPositiveInteger(body, 'max_output_tokens');
  },
};
