// The built-in mock provider: every API a gateway serves (by its adapter's wire family: chat, Responses, messages,
// Gemini, embeddings), JSON and SSE, with deterministic usage and failure knobs.
import { randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import express from 'express';
import type { Express, Request, Response } from 'express';
import type { ProviderApi } from '@tollgate/core';
import { GEMINI_ACTIONS, GEMINI_STREAM_ACTION, providerAdapters } from '@tollgate/providers/kit';
import type { ProviderAdapter } from '@tollgate/providers';
import { splitGeminiTarget } from './gemini-route.js';
import {
  countMockTokens,
  countPromptTokens,
  DEFAULT_EMBEDDING_DIMENSIONS,
  DEFAULT_REPLY_TOKENS,
  mockEmbedding,
  mockReply,
} from './mock-reply.js';
import type { MockReply } from './mock-reply.js';

/** The APIs the mock serves: every API a gateway serves (`openai.compatible` is served as `openai.chat`). */
export type MockApi = Exclude<ProviderApi, 'openai.compatible'>;

/**
 * What the mock does with the next requests. Mutable at run time (`mock.behavior.failure = 'hang'`)
 * so one mock can serve several tests.
 */
export interface MockBehavior {
  /** Delay before the response starts, ms. @default 0 */
  latencyMs?: number;
  /** Delay between stream events, ms. @default 0 */
  chunkDelayMs?: number;
  /** Reply length in tokens before any output cap. @default 24 */
  replyTokens?: number;
  /**
   * `error500`: answer 500 in the provider's error shape; `rateLimit`: 429 with `retry-after`;
   * `hang`: never send headers; `hangMidStream`: send headers and the first event, then nothing;
   * `reset`: destroy the connection without an answer. @default "none"
   */
  failure?: 'none' | 'error500' | 'rateLimit' | 'hang' | 'hangMidStream' | 'reset';
  /** `retry-after` seconds on `rateLimit`. @default 7 */
  retryAfterSeconds?: number;
  /** Answers as long as `replyTokens` whatever output cap the request names (an upstream that ignores it). @default false */
  ignoreOutputCap?: boolean;
  /** When set, requests must carry this key (`Authorization: Bearer`, `x-api-key` or `x-goog-api-key`), else 401. */
  requireApiKey?: string;
}

export interface MockRequestLog {
  path: string;
  headers: IncomingHttpHeaders;
  body: unknown;
}

export interface MockProvider {
  /** The mock as an express app (listen on a port to use it as an upstream). */
  app: Express;
  /**
   * A handler per API, for mounting in-process behind the proxy's middleware (expects a parsed JSON
   * body). Gemini's reads `{model}:{action}` from the route param `target`.
   */
  handlers: Record<MockApi, (req: Request, res: Response) => void>;
  behavior: MockBehavior;
  /** The last 100 requests seen, newest last (headers included, to prove what was forwarded). */
  requests: MockRequestLog[];
  /** Ends every response the mock holds open (hanging ones included). */
  close(): void;
}

type Body = Record<string, unknown>;

class MockBadRequest extends Error {
  constructor(
    readonly param: string,
    message: string,
  ) {
    super(message);
  }
}

function isBody(value: unknown): value is Body {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function optionalPositiveInteger(body: Body, field: string): number | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0)
    throw new MockBadRequest(field, `${field} must be a positive integer`);
  return value;
}

function requireModel(body: Body): string {
  if (typeof body.model !== 'string' || body.model.length === 0)
    throw new MockBadRequest('model', 'model is required and must be a string');
  return body.model;
}

function requireStreamFlag(body: Body): boolean {
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== 'boolean')
    throw new MockBadRequest('stream', 'stream must be a boolean');
  return body.stream === true;
}

function requireMessages(body: Body): unknown[] {
  if (!Array.isArray(body.messages) || body.messages.length === 0)
    throw new MockBadRequest('messages', 'messages must be a non-empty array');
  body.messages.forEach((message, i) => {
    if (!isBody(message) || typeof message.role !== 'string')
      throw new MockBadRequest(`messages[${i}]`, `messages[${i}] must be an object with a role`);
  });
  return body.messages;
}

const id = (prefix: string) => `${prefix}${randomBytes(12).toString('hex')}`;
const nowSeconds = () => Math.floor(Date.now() / 1000);
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());

interface Plan {
  model: string;
  stream: boolean;
  includeUsage: boolean;
  /** The API sends its stream's usage unasked, on the chunk that finishes the answer (a chat dialect's `streamUsage`). */
  usageInline?: boolean;
  inputTokens: number;
  reply: MockReply;
}

class MockNotFound extends Error {}

/** The reply to a request naming output cap `cap`. */
type ReplyFor = (cap: number | undefined) => MockReply;

/**
 * Gemini names the model and the method in the path. Behind the proxy (in-process) the model is
 * the declared call's: a downgrade changes the model the call runs with, never the client's path.
 */
function planGeminiRequest(req: Request, body: Body, reply: ReplyFor): Plan {
  // The mock generates; it does not count (`countTokens` is a 404 here, as any other method).
  const target = splitGeminiTarget(req.params.target, GEMINI_ACTIONS);
  if (!target || target.model === '') throw new MockNotFound();
  if (!Array.isArray(body.contents) || body.contents.length === 0)
    throw new MockBadRequest('contents', 'contents must be a non-empty array');
  const contents = body.contents.map((content: unknown) => (isBody(content) ? content.parts : undefined));
  const config = isBody(body.generationConfig) ? body.generationConfig : {};
  const cap = optionalPositiveInteger(config, 'maxOutputTokens');
  const system = isBody(body.systemInstruction) ? body.systemInstruction.parts : undefined;
  return {
    model: req.tollgate?.call?.model ?? target.model,
    stream: target.action === GEMINI_STREAM_ACTION,
    includeUsage: true,
    inputTokens: countPromptTokens({ messages: contents, system }),
    reply: reply(cap),
  };
}

/** A field the API does not read, when it refuses those (its adapter's `requestFields`): the provider's 422. */
class MockUnknownField extends Error {
  constructor(readonly param: string) {
    super(`Extra inputs are not permitted: ${param}`);
  }
}

function planRequest(adapter: ProviderAdapter, req: Request, body: Body, reply: ReplyFor): Plan {
  const family = adapter.family;
  if (family === 'generate') return planGeminiRequest(req, body, reply);
  const fields = adapter.requestFields;
  if (fields) for (const field of Object.keys(body)) if (!fields.includes(field)) throw new MockUnknownField(field);
  const model = requireModel(body);
  const stream = requireStreamFlag(body);
  if (family === 'chat') {
    const messages = requireMessages(body);
    const cap = optionalPositiveInteger(body, 'max_completion_tokens') ?? optionalPositiveInteger(body, 'max_tokens');
    const options = body.stream_options;
    const usageInline = adapter.streamUsage === 'always';
    const includeUsage = usageInline || (isBody(options) && options.include_usage === true);
    return {
      model,
      stream,
      includeUsage,
      usageInline,
      inputTokens: countPromptTokens({ messages }),
      reply: reply(cap),
    };
  }
  if (family === 'responses') {
    const input = body.input;
    if (typeof input !== 'string' && !Array.isArray(input))
      throw new MockBadRequest('input', 'input must be a string or an array');
    const cap = optionalPositiveInteger(body, 'max_output_tokens');
    return {
      model,
      stream,
      includeUsage: true,
      inputTokens: countPromptTokens({ input, instructions: body.instructions }),
      reply: reply(cap),
    };
  }
  const messages = requireMessages(body);
  const cap = optionalPositiveInteger(body, 'max_tokens');
  if (cap === undefined) throw new MockBadRequest('max_tokens', 'max_tokens: Field required');
  return {
    model,
    stream,
    includeUsage: true,
    inputTokens: countPromptTokens({ messages, system: body.system }),
    reply: reply(cap),
  };
}

/** The inputs of an embeddings request as the texts the mock embeds (token arrays as their JSON), and their mock tokens. */
function embeddingInputs(input: unknown): { texts: string[]; tokens: number } {
  const invalid = () => new MockBadRequest('input', "'$.input' is invalid. Please check the API reference.");
  if (typeof input === 'string') {
    if (input.length === 0) throw invalid();
    return { texts: [input], tokens: countMockTokens(input) };
  }
  if (!Array.isArray(input) || input.length === 0) throw invalid();
  // One array of token ids is one input.
  const items: unknown[] = input.every((item) => typeof item === 'number') ? [input] : input;
  let tokens = 0;
  const texts = items.map((item) => {
    if (typeof item === 'string' && item.length > 0) {
      tokens += countMockTokens(item);
      return item;
    }
    if (Array.isArray(item) && item.length > 0 && item.every((token) => Number.isSafeInteger(token))) {
      tokens += item.length;
      return JSON.stringify(item);
    }
    throw invalid();
  });
  return { texts, tokens };
}

/** OpenAI's embeddings answer: a deterministic unit vector per input, as floats or as base64 of little-endian float32. */
function embeddingsJson(adapter: ProviderAdapter, body: Body) {
  const fields = adapter.requestFields;
  if (fields) for (const field of Object.keys(body)) if (!fields.includes(field)) throw new MockUnknownField(field);
  const model = requireModel(body);
  const dimensions = optionalPositiveInteger(body, 'dimensions') ?? DEFAULT_EMBEDDING_DIMENSIONS;
  const format = body.encoding_format ?? 'float';
  if (format !== 'float' && format !== 'base64')
    throw new MockBadRequest('encoding_format', "'encoding_format' must be one of 'float', 'base64'");
  const { texts, tokens } = embeddingInputs(body.input);
  return {
    object: 'list',
    data: texts.map((text, index) => {
      const vector = mockEmbedding(text, dimensions);
      return {
        object: 'embedding',
        index,
        embedding:
          format === 'base64'
            ? Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength).toString('base64')
            : Array.from(vector),
      };
    }),
    model,
    usage: { prompt_tokens: tokens, total_tokens: tokens },
  };
}

function sendJson(res: Response, status: number, payload: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  res.status(status).set(headers).json(payload);
}

/** An error in the API's own shape (its adapter's `errorBody`, else OpenAI's). */
function sendError(
  res: Response,
  adapter: ProviderAdapter,
  status: number,
  type: string,
  message: string,
  param: string | null = null,
  headers: Record<string, string> = {},
): void {
  const payload = adapter.errorBody
    ? adapter.errorBody({ status, message, type, code: null, param })
    : { error: { message, type, param, code: null } };
  sendJson(res, status, payload, headers);
}

/** Writes SSE events in order, pausing between them; stops quietly when the client left. */
async function writeEvents(
  res: Response,
  events: { event?: string; data: unknown }[],
  delayMs: number,
  stopAfter?: number,
): Promise<void> {
  res
    .status(200)
    .set({ 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' });
  res.flushHeaders();
  for (let i = 0; i < events.length; i++) {
    if (res.destroyed || res.writableEnded) return;
    if (stopAfter !== undefined && i >= stopAfter) return; // hang: keep the stream open, send nothing more
    const { event, data } = events[i]!;
    res.write(`${event ? `event: ${event}\n` : ''}data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
    if (delayMs > 0) await sleep(delayMs);
  }
  res.end();
}

function chatUsage(plan: Plan) {
  return {
    prompt_tokens: plan.inputTokens,
    completion_tokens: plan.reply.outputTokens,
    total_tokens: plan.inputTokens + plan.reply.outputTokens,
    prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
    completion_tokens_details: {
      reasoning_tokens: 0,
      audio_tokens: 0,
      accepted_prediction_tokens: 0,
      rejected_prediction_tokens: 0,
    },
  };
}

function chatJson(plan: Plan) {
  return {
    id: id('chatcmpl-'),
    object: 'chat.completion',
    created: nowSeconds(),
    model: plan.model,
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: plan.reply.text, refusal: null, annotations: [] },
        logprobs: null,
        finish_reason: plan.reply.truncated ? 'length' : 'stop',
      },
    ],
    usage: chatUsage(plan),
    service_tier: 'default',
    system_fingerprint: 'fp_tollgate_mock',
  };
}

function chatEvents(plan: Plan): { data: unknown }[] {
  const base = {
    id: id('chatcmpl-'),
    object: 'chat.completion.chunk',
    created: nowSeconds(),
    model: plan.model,
    service_tier: 'default',
    system_fingerprint: 'fp_tollgate_mock',
  };
  // With include_usage every chunk carries `usage: null` and one last chunk with `choices: []` carries the usage;
  // a dialect that sends it unasked puts it on the chunk that finishes the answer.
  const usageNull = plan.includeUsage && !plan.usageInline ? { usage: null } : {};
  const chunk = (delta: Record<string, unknown>, finishReason: string | null) => ({
    ...base,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
    ...usageNull,
  });
  const events: { data: unknown }[] = [{ data: chunk({ role: 'assistant', content: '', refusal: null }, null) }];
  for (const piece of plan.reply.pieces) events.push({ data: chunk({ content: piece }, null) });
  const finish = chunk({}, plan.reply.truncated ? 'length' : 'stop');
  events.push({ data: plan.usageInline ? { ...finish, usage: chatUsage(plan) } : finish });
  if (plan.includeUsage && !plan.usageInline) events.push({ data: { ...base, choices: [], usage: chatUsage(plan) } });
  events.push({ data: '[DONE]' });
  return events;
}

function responsesUsage(plan: Plan) {
  return {
    input_tokens: plan.inputTokens,
    input_tokens_details: { cached_tokens: 0 },
    output_tokens: plan.reply.outputTokens,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: plan.inputTokens + plan.reply.outputTokens,
  };
}

function responseObject(
  plan: Plan,
  responseId: string,
  messageId: string,
  createdAt: number,
  body: Body,
  done: boolean,
) {
  const status = !done ? 'in_progress' : plan.reply.truncated ? 'incomplete' : 'completed';
  return {
    id: responseId,
    object: 'response',
    created_at: createdAt,
    status,
    error: null,
    incomplete_details: done && plan.reply.truncated ? { reason: 'max_output_tokens' } : null,
    instructions: typeof body.instructions === 'string' ? body.instructions : null,
    max_output_tokens: typeof body.max_output_tokens === 'number' ? body.max_output_tokens : null,
    model: plan.model,
    output: done ? [messageItem(plan, messageId, 'completed')] : [],
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
    usage: done ? responsesUsage(plan) : null,
    user: null,
    metadata: {},
  };
}

function messageItem(plan: Plan, messageId: string, status: 'in_progress' | 'completed') {
  const done = status === 'completed';
  return {
    type: 'message',
    id: messageId,
    status: done && plan.reply.truncated ? 'incomplete' : status,
    role: 'assistant',
    content: done ? [{ type: 'output_text', text: plan.reply.text, annotations: [], logprobs: [] }] : [],
  };
}

function responsesEvents(plan: Plan, body: Body): { event: string; data: unknown }[] {
  const responseId = id('resp_');
  const messageId = id('msg_');
  const createdAt = nowSeconds();
  const events: { event: string; data: Record<string, unknown> }[] = [];
  const push = (type: string, data: Record<string, unknown>) =>
    events.push({ event: type, data: { type, sequence_number: events.length, ...data } });
  push('response.created', { response: responseObject(plan, responseId, messageId, createdAt, body, false) });
  push('response.in_progress', { response: responseObject(plan, responseId, messageId, createdAt, body, false) });
  push('response.output_item.added', { output_index: 0, item: messageItem(plan, messageId, 'in_progress') });
  push('response.content_part.added', {
    item_id: messageId,
    output_index: 0,
    content_index: 0,
    part: { type: 'output_text', text: '', annotations: [], logprobs: [] },
  });
  for (const piece of plan.reply.pieces)
    push('response.output_text.delta', {
      item_id: messageId,
      output_index: 0,
      content_index: 0,
      delta: piece,
      logprobs: [],
    });
  push('response.output_text.done', {
    item_id: messageId,
    output_index: 0,
    content_index: 0,
    text: plan.reply.text,
    logprobs: [],
  });
  push('response.content_part.done', {
    item_id: messageId,
    output_index: 0,
    content_index: 0,
    part: { type: 'output_text', text: plan.reply.text, annotations: [], logprobs: [] },
  });
  push('response.output_item.done', { output_index: 0, item: messageItem(plan, messageId, 'completed') });
  const final = responseObject(plan, responseId, messageId, createdAt, body, true);
  push(final.status === 'incomplete' ? 'response.incomplete' : 'response.completed', { response: final });
  return events;
}

function anthropicUsage(plan: Plan, outputTokens: number) {
  return {
    input_tokens: plan.inputTokens,
    cache_creation_input_tokens: 0,
    cache_read_input_tokens: 0,
    output_tokens: outputTokens,
    service_tier: 'standard',
  };
}

function anthropicJson(plan: Plan) {
  return {
    id: id('msg_'),
    type: 'message',
    role: 'assistant',
    model: plan.model,
    content: [{ type: 'text', text: plan.reply.text }],
    stop_reason: plan.reply.truncated ? 'max_tokens' : 'end_turn',
    stop_sequence: null,
    usage: anthropicUsage(plan, plan.reply.outputTokens),
  };
}

function anthropicEvents(plan: Plan): { event: string; data: unknown }[] {
  const start = { ...anthropicJson(plan), content: [], stop_reason: null, usage: anthropicUsage(plan, 1) };
  const events: { event: string; data: unknown }[] = [
    { event: 'message_start', data: { type: 'message_start', message: start } },
    {
      event: 'content_block_start',
      data: { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
    },
    { event: 'ping', data: { type: 'ping' } },
  ];
  for (const piece of plan.reply.pieces)
    events.push({
      event: 'content_block_delta',
      data: { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: piece } },
    });
  events.push({ event: 'content_block_stop', data: { type: 'content_block_stop', index: 0 } });
  // message_delta usage is cumulative: the whole output so far, not an increment.
  events.push({
    event: 'message_delta',
    data: {
      type: 'message_delta',
      delta: { stop_reason: plan.reply.truncated ? 'max_tokens' : 'end_turn', stop_sequence: null },
      usage: { output_tokens: plan.reply.outputTokens },
    },
  });
  events.push({ event: 'message_stop', data: { type: 'message_stop' } });
  return events;
}

/** Gemini's `usageMetadata`: the prompt, and the candidates' tokens so far (streamed chunks carry running totals). */
function geminiUsage(plan: Plan, outputTokens: number) {
  return {
    promptTokenCount: plan.inputTokens,
    candidatesTokenCount: outputTokens,
    totalTokenCount: plan.inputTokens + outputTokens,
  };
}

function geminiChunk(plan: Plan, responseId: string, text: string, outputTokens: number, finished: boolean) {
  const finish = finished ? { finishReason: plan.reply.truncated ? 'MAX_TOKENS' : 'STOP' } : {};
  return {
    candidates: [{ content: { parts: [{ text }], role: 'model' }, ...finish, index: 0 }],
    usageMetadata: geminiUsage(plan, outputTokens),
    modelVersion: plan.model,
    responseId,
  };
}

function geminiEvents(plan: Plan): { data: unknown }[] {
  const responseId = id('');
  const pieces = plan.reply.pieces.length > 0 ? plan.reply.pieces : [''];
  return pieces.map((piece, i) => ({
    data: geminiChunk(plan, responseId, piece, Math.min(i + 1, plan.reply.outputTokens), i === pieces.length - 1),
  }));
}

function presentedKey(headers: IncomingHttpHeaders): string | undefined {
  const auth = headers.authorization;
  if (typeof auth === 'string' && auth.startsWith('Bearer ')) return auth.slice(7);
  const apiKey = headers['x-api-key'] ?? headers['x-goog-api-key'];
  return typeof apiKey === 'string' ? apiKey : undefined;
}

/** A mock of every provider API a gateway serves. Behavior knobs are read per request, so tests may flip them. */
export function createMockProvider(initial: MockBehavior = {}): MockProvider {
  const behavior: MockBehavior = { ...initial };
  const requests: MockRequestLog[] = [];
  const open = new Set<Response>();

  const handle = (adapter: ProviderAdapter) =>
    async function mockProviderHandler(req: Request, res: Response): Promise<void> {
      const family = adapter.family;
      requests.push({ path: req.path, headers: { ...req.headers }, body: req.body as unknown });
      if (requests.length > 100) requests.shift();
      open.add(res);
      res.once('close', () => open.delete(res));
      try {
        const failure = behavior.failure ?? 'none';
        if (behavior.requireApiKey !== undefined && presentedKey(req.headers) !== behavior.requireApiKey) {
          // As OpenAI does, the message names the presented key, masked but for its ends.
          const presented = presentedKey(req.headers) ?? '';
          const masked =
            presented.length > 8
              ? `${presented.slice(0, 3)}${'*'.repeat(presented.length - 7)}${presented.slice(-4)}`
              : '(none)';
          sendError(
            res,
            adapter,
            401,
            family === 'messages' ? 'authentication_error' : 'invalid_request_error',
            `Incorrect API key provided: ${masked}.`,
          );
          return;
        }
        if ((behavior.latencyMs ?? 0) > 0) await sleep(behavior.latencyMs!);
        if (failure === 'reset') {
          req.socket.destroy();
          return;
        }
        if (failure === 'hang') return; // hold the request open until the client gives up or close() runs
        if (failure === 'error500') {
          sendError(
            res,
            adapter,
            500,
            family === 'messages' ? 'api_error' : 'server_error',
            'The mock provider failed on purpose.',
          );
          return;
        }
        if (failure === 'rateLimit') {
          const retryAfter = String(behavior.retryAfterSeconds ?? 7);
          sendError(
            res,
            adapter,
            429,
            family === 'messages' ? 'rate_limit_error' : 'requests',
            'Mock provider rate limit reached.',
            null,
            { 'retry-after': retryAfter },
          );
          return;
        }
        const body = req.body as unknown;
        if (!isBody(body)) throw new MockBadRequest('body', 'The request body must be a JSON object.');
        if (family === 'embeddings') {
          sendJson(res, 200, embeddingsJson(adapter, body));
          return;
        }
        const replyTokens = behavior.replyTokens ?? DEFAULT_REPLY_TOKENS;
        const reply: ReplyFor = (cap) => mockReply(replyTokens, behavior.ignoreOutputCap ? undefined : cap);
        const plan = planRequest(adapter, req, body, reply);
        const hangAfter = failure === 'hangMidStream' ? 1 : undefined;
        const delay = behavior.chunkDelayMs ?? 0;
        if (family === 'chat') {
          if (plan.stream) await writeEvents(res, chatEvents(plan), delay, hangAfter);
          else sendJson(res, 200, chatJson(plan));
        } else if (family === 'responses') {
          if (plan.stream) await writeEvents(res, responsesEvents(plan, body), delay, hangAfter);
          else sendJson(res, 200, responseObject(plan, id('resp_'), id('msg_'), nowSeconds(), body, true));
        } else if (family === 'generate') {
          if (plan.stream) await writeEvents(res, geminiEvents(plan), delay, hangAfter);
          else sendJson(res, 200, geminiChunk(plan, id(''), plan.reply.text, plan.reply.outputTokens, true));
        } else if (plan.stream) await writeEvents(res, anthropicEvents(plan), delay, hangAfter);
        else sendJson(res, 200, anthropicJson(plan));
      } catch (error) {
        if (error instanceof MockBadRequest)
          sendError(res, adapter, 400, 'invalid_request_error', error.message, error.param);
        else if (error instanceof MockUnknownField)
          sendError(res, adapter, 422, 'invalid_request_error', error.message, error.param);
        else if (error instanceof MockNotFound)
          sendError(res, adapter, 404, 'not_found', `No method ${req.path.slice(0, 200)}`);
        else sendError(res, adapter, 500, 'server_error', 'mock provider bug');
      }
    };

  // One handler for each API a gateway serves (its adapter names a route).
  const served = providerAdapters().filter((adapter) => adapter.route !== undefined);
  const handlers = Object.fromEntries(served.map((adapter) => [adapter.api, handle(adapter)])) as unknown as Record<
    MockApi,
    (req: Request, res: Response) => void
  >;

  const app = express();
  app.disable('x-powered-by');
  app.use(express.json({ limit: '10mb' }));
  for (const prefix of ['', '/v1']) {
    app.post(`${prefix}/chat/completions`, handlers['openai.chat']);
    app.post(`${prefix}/responses`, handlers['openai.responses']);
    app.post(`${prefix}/messages`, handlers['anthropic.messages']);
  }
  // Gemini's `models/{model}:{action}`: Express 5 cannot match a literal ':' after a param.
  app.post('/v1beta/models/:target', handlers['gemini.generate']);
  // An API whose adapter declares its own upstream is served at its gateway path: an upstream entry whose base URL
  // and path make that path reaches it (`/acme/v1/chat/completions`: base URL `http://mock/acme/v1`).
  for (const adapter of served)
    if (adapter.upstream && adapter.route) app.post(adapter.route.path, handlers[adapter.api as MockApi]);
  app.use(function mockNotFound(_req: Request, res: Response) {
    sendJson(res, 404, {
      error: { message: 'Not found', type: 'invalid_request_error', param: null, code: 'not_found' },
    });
  });
  app.use(function mockBadBody(error: unknown, _req: Request, res: Response, _next: (err?: unknown) => void) {
    const status =
      typeof error === 'object' && error !== null && typeof (error as { status?: unknown }).status === 'number'
        ? (error as { status: number }).status
        : 500;
    sendJson(res, status, {
      error: { message: 'Bad request body', type: 'invalid_request_error', param: null, code: null },
    });
  });

  return {
    app,
    handlers,
    behavior,
    requests,
    close() {
      for (const res of open) res.destroy();
      open.clear();
    },
  };
}
