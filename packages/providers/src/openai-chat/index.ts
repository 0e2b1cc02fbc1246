// OpenAI Chat Completions (`POST /v1/chat/completions`): request shape, estimate, usage, and the ending of a cut stream.
import type { Provider, ProviderApi, TokenUsage } from '@tollgate/core';
import type { CallRequest, CallShape } from '@tollgate/core/provider-call';
import type { AdapterRoute, ProviderAdapter } from '../adapter.js';
import type { RequestCounter } from '../counter.js';
import { AZURE_OPENAI_UPSTREAM } from './azure.js';
import { OPENAI_COMPATIBLE_UPSTREAM, OPENAI_UPSTREAM } from './upstreams.js';
import { StreamShapes } from '../chunk-shape.js';
import { contentOpen } from './content-shape.js';
import { asArray, bodyModel, isObject, parseJson, positiveInteger } from '../json.js';
import type { Json } from '../json.js';
import {
  countChatMessage,
  countOpenAiTools,
  countResponseFormat,
  countToolChoice,
  mapChatMessage,
  openAiUsage,
  OPENAI_USAGE_FIELDS,
  readOpenAiAnswer,
  REPLY_PRIMING,
} from '../openai-framing.js';
import { mapEach, withField } from '../prompt-text.js';
import type { TextMap } from '../prompt-text.js';
import { checkMessages, checkPositiveInteger } from '../request-checks.js';
import { countedOutput, OutputText, serviceTierOf, sseEvent, withServiceTier } from '../usage.js';
import type { OutputCounter, ReadUsage, StreamEndingUsage, UsageReader } from '../usage.js';

/** Input tokens of a Chat Completions request, framed as OpenAI renders it (other chat dialects approximate it). */
export function countChatRequest(counter: RequestCounter, body: Json): number {
  let tokens = REPLY_PRIMING;
  for (const message of asArray(body.messages)) if (isObject(message)) tokens += countChatMessage(counter, message);
  // Most requests declare neither: no array is made for them.
  const tools = asArray(body.tools);
  const functions = asArray(body.functions);
  tokens += countOpenAiTools(counter, functions.length === 0 ? tools : [...tools, ...functions]);
  tokens += countToolChoice(counter, body.tool_choice ?? body.function_call);
  tokens += countResponseFormat(counter, body.response_format);
  // Search models put the pages they read into the prompt.
  if (body.web_search_options !== undefined) counter.pullsContent();
  return counter.approximate(tokens);
}

/** A Chat Completions body with every message's text through `map` (see `ProviderAdapter.mapPromptText`). */
function mapChatPromptText(body: Json, map: TextMap): Json {
  return withField(
    body,
    'messages',
    mapEach(body.messages, (message) => mapChatMessage(message, map)),
  );
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

/** Where a chat chunk, and a JSON answer, hold their usage. */
const USAGE_PATH = ['usage'] as const;

/**
 * Reads a Chat Completions answer, JSON or stream. A class, so that its methods are shared rather than
 * made for every response; what a stream said about itself (for an ending that matches it) is kept
 * only once a stream starts.
 */
class ChatReader implements UsageReader {
  model: string | undefined = undefined;
  readonly output = new OutputText();
  finalUsageAt: readonly string[] | undefined = undefined;
  private usage: TokenUsage | undefined = undefined;
  /** The tier the answer says served it: its chunks and its JSON carry `service_tier`. */
  private tier: string | undefined = undefined;
  private id = '';
  private created = 0;
  private fingerprint: unknown = undefined;
  /** Choice indexes a stream showed, true once the choice finished (a stream with `n` > 1 ends each one still open). */
  private choices: Map<number, boolean> | undefined = undefined;
  /** The shape of the stream's content chunks, once one was parsed (see contentOpen). */
  private readonly shapes = new StreamShapes<Json>();

  /**
   * `usageAsked`: the client asked for the usage chunk; `usageInline`: the API sends its usage unasked, on the
   * chunk that finishes the answer (so does the ending).
   */
  constructor(
    readonly api: ProviderApi,
    private readonly stripAddedUsage: boolean,
    private readonly usageAsked: boolean,
    private readonly usageInline = false,
  ) {}

  onEvent(_event: string, data: string): boolean {
    this.finalUsageAt = undefined;
    if (data === '[DONE]') return false;
    const open = this.shapes.read(data);
    if (open !== undefined) return this.take(this.shapes.chunk, open[0]);
    const chunk = parseJson(data);
    if (!isObject(chunk)) return false;
    const content = contentOpen(chunk);
    if (content !== undefined) this.shapes.take(data, chunk, content);
    return this.take(chunk);
  }

  /** What a chunk says; `content`: the text of its one choice, whose delta holds nothing else (a shape's chunk). */
  private take(chunk: Json, content?: string): boolean {
    if (typeof chunk.model === 'string') this.model = chunk.model;
    this.tier = serviceTierOf(chunk.service_tier) ?? this.tier;
    if (this.id === '' && typeof chunk.id === 'string') {
      this.id = chunk.id;
      this.created = typeof chunk.created === 'number' ? chunk.created : 0;
      this.fingerprint = chunk.system_fingerprint;
    }
    const seen = (this.choices ??= new Map());
    const choices = asArray(chunk.choices);
    for (const choice of choices) {
      if (!isObject(choice)) continue;
      const index = typeof choice.index === 'number' ? choice.index : 0;
      if (seen.get(index) !== true) seen.set(index, typeof choice.finish_reason === 'string');
      if (content === undefined) collectChatMessage(this.output, choice.delta);
      else this.output.add(content);
    }
    if (isObject(chunk.usage)) {
      this.usage = openAiUsage(chunk.usage);
      this.finalUsageAt = USAGE_PATH;
      return this.stripAddedUsage && choices.length === 0;
    }
    return false;
  }

  onJson(body: unknown): void {
    if (!isObject(body)) return;
    if (typeof body.model === 'string') this.model = body.model;
    this.tier = serviceTierOf(body.service_tier);
    for (const choice of asArray(body.choices)) if (isObject(choice)) collectChatMessage(this.output, choice.message);
    if (isObject(body.usage)) this.usage = openAiUsage(body.usage);
  }

  onUnparsed(text: string): void {
    this.output.add(text);
  }

  result(countOutput: OutputCounter): ReadUsage | undefined {
    const read = this.usage
      ? { usage: this.usage, source: 'provider' as const }
      : countedOutput(this.output, countOutput);
    return withServiceTier(read, this.tier);
  }

  ending({ inputTokens, outputTokens }: StreamEndingUsage): string {
    const head = {
      id: this.id || 'chatcmpl-tollgate',
      object: 'chat.completion.chunk',
      created: this.created || Math.floor(Date.now() / 1000),
      model: this.model ?? '',
    };
    const fingerprint = this.fingerprint === undefined ? {} : { system_fingerprint: this.fingerprint };
    const open: number[] = [];
    const seen = this.choices;
    if (seen) for (const [index, finished] of seen) if (!finished) open.push(index);
    if (seen === undefined || seen.size === 0) open.push(0);
    let text = '';
    const usage = {
      prompt_tokens: inputTokens,
      completion_tokens: outputTokens,
      total_tokens: inputTokens + outputTokens,
    };
    // A choice that finished already (n > 1) keeps its own finish_reason.
    const finish = open.map((index) => ({ index, delta: {}, logprobs: null, finish_reason: 'length' }));
    if (this.usageInline) return `${sseEvent({ ...head, ...fingerprint, choices: finish, usage })}data: [DONE]\n\n`;
    if (finish.length > 0) text += sseEvent({ ...head, ...fingerprint, choices: finish });
    // The client asked for the usage chunk: it gets one, with what was counted.
    if (this.usageAsked) text += sseEvent({ ...head, ...fingerprint, choices: [], usage });
    return `${text}data: [DONE]\n\n`;
  }
}

interface ChatAdapterOptions {
  api: ProviderApi;
  provider: Provider;
  /** The cap fields the API reads, the one written when the request names none first. */
  capFields: readonly string[];
  /** `gen_ai.provider.name` of its calls; absent for servers that are no named provider. */
  genAiProvider?: string;
  /** How messages name its upstream. @default the provider */
  label?: string;
  /**
   * `always`: its streams carry usage unasked, on their last chunk (nothing is added to the request, and a
   * cut stream's ending carries it there too). @default 'asked' (`stream_options.include_usage`)
   */
  streamUsage?: 'asked' | 'always';
  /** Where a gateway serves it. @default not served */
  route?: AdapterRoute;
}

/** The cap fields a body check looks at, in the order it reports them. */
const CHECKED_CAP_FIELDS = ['max_tokens', 'max_completion_tokens'];

/** A Chat Completions adapter; `openai-compatible` is the same wire format with its own cap field and provider. */
export function chatCompletionsAdapter(options: ChatAdapterOptions): ProviderAdapter {
  const { capFields } = options;
  const usageInline = options.streamUsage === 'always';
  const checkedCaps = CHECKED_CAP_FIELDS.filter((field) => capFields.includes(field));
  const askStreamUsage = (body: Json): boolean => {
    if (usageInline || body.stream !== true) return false;
    const current = isObject(body.stream_options) ? body.stream_options : {};
    if (current.include_usage === true) return false;
    body.stream_options = Object.assign({}, current, { include_usage: true });
    return true;
  };
  return {
    api: options.api,
    provider: options.provider,
    label: options.label ?? options.provider,
    family: 'chat',
    streamUsage: options.streamUsage ?? 'asked',
    ...(options.route ? { route: options.route } : {}),
    checkRequest(body) {
      const problem = checkMessages(body);
      if (problem) return problem;
      for (const field of checkedCaps) {
        const bad = checkPositiveInteger(body, field);
        if (bad) return bad;
      }
      return undefined;
    },
    genAi:
      options.genAiProvider === undefined
        ? { operation: 'chat' }
        : { operation: 'chat', provider: options.genAiProvider },
    read({ body }: CallRequest): CallShape {
      const record = isObject(body) ? body : {};
      // Servers differ on which cap field wins: the estimate takes the larger, writing the cap sets both.
      let outputCap: number | undefined;
      for (const field of capFields) {
        const cap = positiveInteger(record[field]);
        if (cap !== undefined && (outputCap === undefined || cap > outputCap)) outputCap = cap;
      }
      return {
        model: bodyModel(body),
        outputCap,
        stream: record.stream === true,
        choices: positiveInteger(record.n) ?? 1,
        serviceTier: serviceTierOf(record.service_tier),
      };
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
    endUserField: 'user',
    answerUsageFields: OPENAI_USAGE_FIELDS,
    usageField: 'usage',
    countInput: countChatRequest,
    mapPromptText: mapChatPromptText,
    requestStreamUsage: askStreamUsage,
    streamRequest(body) {
      const streamed = Object.assign({}, body, { stream: true });
      askStreamUsage(streamed);
      return streamed;
    },
    createReader(readerOptions) {
      const strip = readerOptions?.stripAddedUsage ?? false;
      // Asked by the client itself (not added by the meter): only then does a cut stream end with a usage chunk.
      const streamOptions = readerOptions?.request?.stream_options;
      return new ChatReader(
        options.api,
        strip,
        !strip && isObject(streamOptions) && streamOptions.include_usage === true,
        usageInline,
      );
    },
  };
}

/** OpenAI Chat Completions. */
export const openAiChat: ProviderAdapter = {
  ...chatCompletionsAdapter({
    api: 'openai.chat',
    provider: 'openai',
    capFields: ['max_completion_tokens', 'max_tokens'],
    genAiProvider: 'openai',
    label: 'OpenAI',
    route: { path: '/v1/chat/completions' },
  }),
  upstream: OPENAI_UPSTREAM,
  upstreamVariants: [OPENAI_COMPATIBLE_UPSTREAM, AZURE_OPENAI_UPSTREAM],
  fromChat(body) {
    // OpenAI's reasoning models refuse `max_tokens`: a cap in it alone moves to the current field.
    if (body.max_tokens !== undefined && body.max_completion_tokens === undefined) {
      body.max_completion_tokens = body.max_tokens;
      delete body.max_tokens;
    }
    return body;
  },
};
