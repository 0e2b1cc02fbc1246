// OpenAI Chat Completions (`POST /v1/chat/completions`): request shape, estimate, usage, and the ending of a cut stream.
import type { CallRequest, CallShape, Provider, ProviderApi, TokenUsage } from '@tollgate/core';
import type { ProviderAdapter } from '../adapter.js';
import type { RequestCounter } from '../counter.js';
import { asArray, bodyModel, isObject, parseJson, positiveInteger } from '../json.js';
import type { Json } from '../json.js';
import {
  countChatMessage, countOpenAiTools, countResponseFormat, countToolChoice, openAiUsage, OPENAI_USAGE_FIELDS, readOpenAiAnswer, REPLY_PRIMING,
} from '../openai-framing.js';
import { countedOutput, OutputText, sseEvent } from '../usage.js';
import type { UsageReader } from '../usage.js';

function countChatRequest(counter: RequestCounter, body: Json): number {
  let tokens = REPLY_PRIMING;
  for (const message of asArray(body.messages)) if (isObject(message)) tokens += countChatMessage(counter, message);
  tokens += countOpenAiTools(counter, [...asArray(body.tools), ...asArray(body.functions)]);
  tokens += countToolChoice(counter, body.tool_choice ?? body.function_call);
  tokens += countResponseFormat(counter, body.response_format);
  // Search models put the pages they read into the prompt.
  if (body.web_search_options !== undefined) counter.pullsContent();
  return counter.approximate(tokens);
}

function collectChatMessage(output: OutputText, message: unknown): void {
  if (!isObject(message)) return;
  output.add(message.content);
  output.add(message.refusal);
  output.add(message.reasoning_content);
  for (const call of asArray(message.tool_calls)) {
    if (!isObject(call) || !isObject(call.function)) continue;
    output.add(call.function.name);
    output.add(call.function.arguments);
  }
  if (isObject(message.function_call)) output.add(message.function_call.arguments);
}

/** What a chat stream said about itself, for an ending that matches it. */
interface ChatStreamState {
  id: string;
  created: number;
  fingerprint: unknown;
  /** Choice indexes seen, true once the choice finished (a stream with `n` > 1 ends each one still open). */
  choices: Map<number, boolean>;
}

function createChatReader(api: ProviderApi, stripAddedUsage: boolean, usageAsked: boolean): UsageReader {
  const output = new OutputText();
  let usage: TokenUsage | undefined;
  const state: ChatStreamState = { id: '', created: 0, fingerprint: undefined, choices: new Map() };
  const reader: UsageReader = {
    api,
    model: undefined,
    output,
    onEvent(_event, data) {
      if (data === '[DONE]') return false;
      const chunk = parseJson(data);
      if (!isObject(chunk)) return false;
      if (typeof chunk.model === 'string') reader.model = chunk.model;
      if (state.id === '' && typeof chunk.id === 'string') {
        state.id = chunk.id;
        state.created = typeof chunk.created === 'number' ? chunk.created : 0;
        state.fingerprint = chunk.system_fingerprint;
      }
      const choices = asArray(chunk.choices);
      for (const choice of choices) {
        if (!isObject(choice)) continue;
        const index = typeof choice.index === 'number' ? choice.index : 0;
        if (state.choices.get(index) !== true) state.choices.set(index, typeof choice.finish_reason === 'string');
        collectChatMessage(output, choice.delta);
      }
      if (isObject(chunk.usage)) {
        usage = openAiUsage(chunk.usage);
        return stripAddedUsage && choices.length === 0;
      }
      return false;
    },
    onJson(body) {
      if (!isObject(body)) return;
      if (typeof body.model === 'string') reader.model = body.model;
      for (const choice of asArray(body.choices)) if (isObject(choice)) collectChatMessage(output, choice.message);
      if (isObject(body.usage)) usage = openAiUsage(body.usage);
    },
    onUnparsed: (text) => output.add(text),
    result: (countOutput) => (usage ? { usage, source: 'provider' } : countedOutput(output, countOutput)),
    ending({ inputTokens, outputTokens }) {
      const head = { id: state.id || 'chatcmpl-tollgate', object: 'chat.completion.chunk', created: state.created || Math.floor(Date.now() / 1000), model: reader.model ?? '' };
      const fingerprint = state.fingerprint === undefined ? {} : { system_fingerprint: state.fingerprint };
      const open: number[] = [];
      for (const [index, finished] of state.choices) if (!finished) open.push(index);
      if (state.choices.size === 0) open.push(0);
      let text = '';
      // A choice that finished already (n > 1) keeps its own finish_reason.
      const finish = open.map((index) => ({ index, delta: {}, logprobs: null, finish_reason: 'length' }));
      if (finish.length > 0) text += sseEvent({ ...head, ...fingerprint, choices: finish });
      // The client asked for the usage chunk: it gets one, with what was counted.
      if (usageAsked) {
        const usageChunk = { prompt_tokens: inputTokens, completion_tokens: outputTokens, total_tokens: inputTokens + outputTokens };
        text += sseEvent({ ...head, ...fingerprint, choices: [], usage: usageChunk });
      }
      return `${text}data: [DONE]\n\n`;
    },
  };
  return reader;
}

export interface ChatAdapterOptions {
  api: ProviderApi;
  provider: Provider;
  /** The cap fields the API reads, the one written when the request names none first. */
  capFields: readonly string[];
  /** `gen_ai.provider.name` of its calls; absent for servers that are no named provider. */
  genAiProvider?: string;
}

/** A Chat Completions adapter; `openai-compatible` is the same wire format with its own cap field and provider. */
export function chatCompletionsAdapter(options: ChatAdapterOptions): ProviderAdapter {
  const { capFields } = options;
  return {
    api: options.api,
    provider: options.provider,
    genAi: options.genAiProvider === undefined ? { operation: 'chat' } : { operation: 'chat', provider: options.genAiProvider },
    read({ body }: CallRequest): CallShape {
      const record = isObject(body) ? body : {};
      // Servers differ on which cap field wins: the estimate takes the larger, writing the cap sets both.
      let outputCap: number | undefined;
      for (const field of capFields) {
        const cap = positiveInteger(record[field]);
        if (cap !== undefined && (outputCap === undefined || cap > outputCap)) outputCap = cap;
      }
      return { model: bodyModel(body), outputCap, stream: record.stream === true, choices: positiveInteger(record.n) ?? 1 };
    },
    writeOutputCap(body, cap) {
      // Every field the client set ends at most at `cap` (none is raised): whichever a server reads, it is bounded.
      let written = false;
      for (const field of capFields) {
        if (body[field] === undefined) continue;
        const asked = positiveInteger(body[field]);
        body[field] = asked !== undefined && asked < cap ? asked : cap;
        written = true;
      }
      if (!written) body[capFields[0]!] = cap;
    },
    writeModel(body, model) {
      body.model = model;
    },
    readUsage: readOpenAiAnswer,
    answerUsageFields: OPENAI_USAGE_FIELDS,
    countInput: countChatRequest,
    requestStreamUsage(body) {
      if (body.stream !== true) return false;
      const current = isObject(body.stream_options) ? body.stream_options : {};
      if (current.include_usage === true) return false;
      body.stream_options = Object.assign({}, current, { include_usage: true });
      return true;
    },
    createReader(readerOptions) {
      const strip = readerOptions?.stripAddedUsage ?? false;
      // Asked by the client itself (not added by the meter): only then does a cut stream end with a usage chunk.
      const streamOptions = readerOptions?.request?.stream_options;
      return createChatReader(options.api, strip, !strip && isObject(streamOptions) && streamOptions.include_usage === true);
    },
  };
}

/** OpenAI Chat Completions. */
export const openAiChat: ProviderAdapter = chatCompletionsAdapter({
  api: 'openai.chat',
  provider: 'openai',
  capFields: ['max_completion_tokens', 'max_tokens'],
  genAiProvider: 'openai',
});
