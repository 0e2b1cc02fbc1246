// The built-in mock provider: every API a gateway serves (by its adapter's wire family: chat, Responses, messages,
// Gemini, embeddings; or the API's own mock answer: audio, images), JSON and SSE, with deterministic usage and failure
// knobs.
import type { IncomingHttpHeaders } from 'node:http';
import express from 'express';
import type { Express, Request, Response } from 'express';
import type { ProviderApi } from '@tollgate/core';
import type { MockAnswer, ProviderAdapter, WireFamily } from '../adapter.js';
import { providerAdapters } from '../adapters.js';
import { anthropicAnswer, anthropicEvents } from '../anthropic-messages/answer.js';
import type { SseMessage } from '../answer-types.js';
import { geminiAnswer, geminiEvents } from '../gemini/answer.js';
import { isObject } from '../json.js';
import type { Json } from '../json.js';
import { chatAnswer, chatEvents } from '../openai-chat/answer.js';
import { responsesAnswer, responsesEvents } from '../openai-responses/answer.js';
import { readUploadForm } from '../upload-form.js';
import type { UploadFormError } from '../upload-form.js';
import { sseEvent } from '../usage.js';
import { DEFAULT_REPLY_TOKENS, mockReply } from './reply.js';
import {
  embeddingsReply,
  MockBadRequest,
  MockNotFound,
  MockUnknownField,
  plainAnswer,
  planRequest,
} from './requests.js';
import type { Plan, ReplyFor } from './requests.js';

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

/** A handler of one API, for mounting in-process (expects a parsed JSON body). */
type MockHandler = (req: Request, res: Response) => void;

export interface MockProvider {
  /** The mock as an express app (listen on a port to use it as an upstream). */
  app: Express;
  /**
   * A handler per API, for mounting in-process behind the proxy's middleware (expects a parsed JSON
   * body). Gemini's reads `{model}:{action}` from the route param `target`.
   */
  handlers: Record<MockApi, MockHandler>;
  behavior: MockBehavior;
  /** The last 100 requests seen, newest last (headers included, to prove what was forwarded). */
  requests: MockRequestLog[];
  /** Ends every response the mock holds open (hanging ones included). */
  close(): void;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());

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
async function writeEvents(res: Response, events: SseMessage[], delayMs: number, stopAfter?: number): Promise<void> {
  res
    .status(200)
    .set({ 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' });
  res.flushHeaders();
  for (let i = 0; i < events.length; i++) {
    if (res.destroyed || res.writableEnded) return;
    if (stopAfter !== undefined && i >= stopAfter) return; // hang: keep the stream open, send nothing more
    const { event, data } = events[i]!;
    res.write(sseEvent(data, event));
    if (delayMs > 0) await sleep(delayMs);
  }
  res.end();
}

/** How the mock writes a generation family's answer: as JSON, and that JSON as the family's stream, a token a delta. */
interface MockSpeaker {
  json(plan: Plan, body: Json): Json;
  events(plan: Plan, answer: Json): SseMessage[];
}

type GenerationFamily = Exclude<WireFamily, 'embeddings'>;

const SPEAKERS: Readonly<Record<GenerationFamily, MockSpeaker>> = {
  chat: {
    json: (plan) => ({ ...chatAnswer(plainAnswer(plan)), system_fingerprint: 'fp_tollgate_mock' }),
    // With include_usage every chunk says `usage: null` and a last chunk carries it; a dialect that sends it unasked
    // puts it on the chunk that finishes the answer.
    events: (plan, answer) =>
      chatEvents(answer, {
        deltas: () => plan.reply.pieces,
        usage: !plan.includeUsage ? 'none' : plan.usageInline ? 'inline' : 'chunk',
        announceUsage: plan.includeUsage && !plan.usageInline,
      }),
  },
  responses: {
    json: (plan, body) => responsesAnswer(plainAnswer(plan), body),
    events: (plan, answer) => responsesEvents(answer, { deltas: () => plan.reply.pieces }),
  },
  messages: {
    json: (plan) => anthropicAnswer(plainAnswer(plan)),
    events: (plan, answer) => anthropicEvents(answer, { deltas: () => plan.reply.pieces }),
  },
  generate: {
    json: (plan) => geminiAnswer(plainAnswer(plan)),
    events: (plan, answer) => geminiEvents(answer, { deltas: () => plan.reply.pieces }),
  },
};

function presentedKey(headers: IncomingHttpHeaders): string | undefined {
  const auth = headers.authorization;
  if (typeof auth === 'string' && auth.startsWith('Bearer ')) return auth.slice(7);
  const apiKey = headers['x-api-key'] ?? headers['x-goog-api-key'];
  return typeof apiKey === 'string' ? apiKey : undefined;
}

type Failure = NonNullable<MockBehavior['failure']>;

/** Answers a request the way `behavior` says it fails, or returns false when it does not fail (it may only be late). */
async function failAsTold(
  behavior: MockBehavior,
  failure: Failure,
  adapter: ProviderAdapter,
  req: Request,
  res: Response,
): Promise<boolean> {
  const messages = adapter.family === 'messages';
  const presented = presentedKey(req.headers);
  if (behavior.requireApiKey !== undefined && presented !== behavior.requireApiKey) {
    // As OpenAI does, the message names the presented key, masked but for its ends.
    const key = presented ?? '';
    const masked = key.length > 8 ? `${key.slice(0, 3)}${'*'.repeat(key.length - 7)}${key.slice(-4)}` : '(none)';
    const type = messages ? 'authentication_error' : 'invalid_request_error';
    sendError(res, adapter, 401, type, `Incorrect API key provided: ${masked}.`);
    return true;
  }
  if ((behavior.latencyMs ?? 0) > 0) await sleep(behavior.latencyMs!);
  if (failure === 'reset') req.socket.destroy();
  else if (failure === 'hang') {
    // Held open until the client gives up or close() runs.
  } else if (failure === 'error500')
    sendError(res, adapter, 500, messages ? 'api_error' : 'server_error', 'The mock provider failed on purpose.');
  else if (failure === 'rateLimit') {
    const headers = { 'retry-after': String(behavior.retryAfterSeconds ?? 7) };
    const type = messages ? 'rate_limit_error' : 'requests';
    sendError(res, adapter, 429, type, 'Mock provider rate limit reached.', null, headers);
  } else return false;
  return true;
}

/** An API's own mock answer (audio, images: see `ProviderAdapter.mockAnswer`): JSON, events or media bytes. */
async function sendMockAnswer(res: Response, mock: MockAnswer, delayMs: number): Promise<void> {
  if ('json' in mock) sendJson(res, 200, mock.json);
  else if ('events' in mock) await writeEvents(res, [...mock.events], delayMs);
  else if (!res.headersSent && !res.destroyed) res.status(200).set('content-type', mock.contentType).end(mock.bytes);
}

/** The answer to a request that does not fail: JSON, or the family's stream (cut after its first event on `hangMidStream`). */
async function answer(
  behavior: MockBehavior,
  failure: Failure,
  adapter: ProviderAdapter,
  req: Request,
  res: Response,
): Promise<void> {
  const body = req.body as unknown;
  if (!isObject(body)) throw new MockBadRequest('body', 'The request body must be a JSON object.');
  if (adapter.family === 'embeddings') {
    sendJson(res, 200, embeddingsReply(adapter, body));
    return;
  }
  if (adapter.mockAnswer) {
    await sendMockAnswer(res, adapter.mockAnswer(body), behavior.chunkDelayMs ?? 0);
    return;
  }
  const replyTokens = behavior.replyTokens ?? DEFAULT_REPLY_TOKENS;
  const reply: ReplyFor = (cap) => mockReply(replyTokens, behavior.ignoreOutputCap ? undefined : cap);
  const plan = planRequest(adapter, req, body, reply);
  const speaker = SPEAKERS[adapter.family as GenerationFamily] ?? SPEAKERS.messages;
  const json = speaker.json(plan, body);
  if (!plan.stream) sendJson(res, 200, json);
  else {
    const hangAfter = failure === 'hangMidStream' ? 1 : undefined;
    await writeEvents(res, speaker.events(plan, json), behavior.chunkDelayMs ?? 0, hangAfter);
  }
}

/** A refused request's answer, as the provider words it. */
function refuse(error: unknown, adapter: ProviderAdapter, req: Request, res: Response): void {
  if (error instanceof MockBadRequest)
    sendError(res, adapter, 400, 'invalid_request_error', error.message, error.param);
  else if (error instanceof MockUnknownField)
    sendError(res, adapter, 422, 'invalid_request_error', error.message, error.param);
  else if (error instanceof MockNotFound)
    sendError(res, adapter, 404, 'not_found', `No method ${req.path.slice(0, 200)}`);
  else sendError(res, adapter, 500, 'server_error', 'mock provider bug');
}

/** A multipart upload's fields as the body, as a gateway reads them (its files described, not stored). */
function mockUploadBody(req: Request, res: Response, next: () => void): void {
  readUploadForm(req, MOCK_UPLOAD_LIMIT).then(
    (form) => {
      req.body = form.fields;
      next();
    },
    (error: UploadFormError) =>
      sendJson(res, error.status, {
        error: { message: error.message, type: 'invalid_request_error', param: 'file', code: null },
      }),
  );
}

/** The largest upload the mock reads: OpenAI's audio limit. */
const MOCK_UPLOAD_LIMIT = 25 * 1024 * 1024;

/** The mock as an app of its own: each API at its provider's paths (with and without `/v1`), and what is not found. */
function mockApp(handlers: Record<MockApi, MockHandler>, served: readonly ProviderAdapter[]): Express {
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
    if (adapter.upstream && adapter.route)
      app.post(
        adapter.route.path,
        ...(adapter.requestForm === 'multipart' ? [mockUploadBody] : []),
        handlers[adapter.api as MockApi],
      );
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
  return app;
}

/** A mock of every provider API a gateway serves. Behavior knobs are read per request, so tests may flip them. */
export function createMockProvider(initial: MockBehavior = {}): MockProvider {
  const behavior: MockBehavior = { ...initial };
  const requests: MockRequestLog[] = [];
  const open = new Set<Response>();

  const handle = (adapter: ProviderAdapter) =>
    async function mockProviderHandler(req: Request, res: Response): Promise<void> {
      requests.push({ path: req.path, headers: { ...req.headers }, body: req.body as unknown });
      if (requests.length > 100) requests.shift();
      open.add(res);
      res.once('close', () => open.delete(res));
      try {
        const failure = behavior.failure ?? 'none';
        if (!(await failAsTold(behavior, failure, adapter, req, res)))
          await answer(behavior, failure, adapter, req, res);
      } catch (error) {
        refuse(error, adapter, req, res);
      }
    };

  // One handler for each API a gateway serves (its adapter names a route).
  const served = providerAdapters().filter((adapter) => adapter.route !== undefined);
  const handlers = Object.fromEntries(served.map((adapter) => [adapter.api, handle(adapter)])) as unknown as Record<
    MockApi,
    MockHandler
  >;
  return {
    app: mockApp(handlers, served),
    handlers,
    behavior,
    requests,
    close() {
      for (const res of open) res.destroy();
      open.clear();
    },
  };
}
