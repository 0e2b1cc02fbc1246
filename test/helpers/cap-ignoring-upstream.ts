// A fake provider on a real port that ignores the output cap (or honours it), bills input as told, records each call.
// Its answers are words of one token each, or the tokens of a text under a provider's own kind of tokenizer.
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { countPromptTokens } from '@tollgate/providers/mock';
import { tokenPieces } from './provider-tokenizers.js';
import type { ProviderCase, ProviderTokenizer } from './provider-tokenizers.js';
import { closeServer } from './proxy.js';

export type FakeApi = 'openai.chat' | 'openai.responses' | 'anthropic.messages' | 'gemini.generate';

const ROUTES = new Map<string, FakeApi>([
  ['/v1/chat/completions', 'openai.chat'],
  ['/v1/responses', 'openai.responses'],
  ['/v1/messages', 'anthropic.messages'],
]);
/** Gemini names the model and the method in the path (`alt=sse` asks for a stream). */
const GEMINI_ROUTE = /^\/v1beta\/models\/([^/:]+):(generateContent|streamGenerateContent)(\?alt=sse)?$/;

/** Words that are one token each in o200k_base and cl100k_base (with or without their leading space). */
const WORDS =
  'the cat sat on a mat and then it ran to the park with one small dog for fun all day long under blue sky'.split(' ');

export interface FakeUpstreamOptions {
  /** Output tokens of every answer. @default 2000 */
  outputTokens: number;
  /** Tokens (words) per stream event. @default 1 */
  tokensPerEvent: number;
  /** Stop at the cap in the body, as real providers do; otherwise the cap is ignored. @default false */
  honourCap: boolean;
  /** Write each event in two halves, a turn of the event loop apart (TCP may split events anywhere). @default false */
  splitEvents: boolean;
  /**
   * The input tokens an answer's usage reports for a request body: what the provider bills.
   * @default the mock provider's count (`countPromptTokens`)
   */
  billInput: (api: FakeApi, body: Record<string, unknown>) => number;
  /** Milliseconds to wait after reading a request before answering anything (a slow provider). @default 0 */
  delayMs: number;
  /**
   * Answer with the first `outputTokens` tokens of `text` under this tokenizer (a provider's own kind), streamed a
   * token's text at a time and reported as that many tokens, instead of one-token words. @default none
   */
  tokens?: { tokenizer: ProviderTokenizer; text: string };
  /**
   * Anthropic's `POST /v1/messages/count_tokens`: answered as the provider does, `{ input_tokens }` being the tokens of
   * the messages' text under `tokenizer` plus `overhead` (the message around it); or failed (`fail`: a 500), or never
   * answered (`hang`). @default a 404, as any path the fake does not serve
   */
  countTokens?: { tokenizer: ProviderTokenizer; overhead: number } | 'fail' | 'hang';
}

/** The text of a Messages request's messages, as a count reads it: string contents and text blocks. */
function messagesText(body: Body): string {
  const messages = Array.isArray(body.messages) ? (body.messages as Body[]) : [];
  return messages
    .map(({ content }) =>
      typeof content === 'string'
        ? content
        : Array.isArray(content)
          ? (content as Body[]).map((block) => (typeof block.text === 'string' ? block.text : '')).join('')
          : '',
    )
    .join('');
}

/** One call the fake answered. */
export interface FakeCall {
  api: FakeApi;
  /** The model the body named. */
  model: string;
  stream: boolean;
  /** The cap the body carried. */
  cap: number | undefined;
  /** The usage the answer reports (the stream's usage only reaches the client when it asked for it). */
  usage: { inputTokens: number; outputTokens: number };
  /** Output events (text deltas) written before the answer ended or was cut. */
  eventsWritten: number;
  /** The connection closed before the fake finished its answer. */
  aborted: boolean;
  /** The answer was written to its end. */
  finished: boolean;
  /** Everything written, for comparing with what the client received. */
  written: string;
}

export interface FakeUpstream {
  /** Base URL without a path: OpenAI upstreams use `${url}/v1`, Anthropic ones `${url}`. */
  url: string;
  options: FakeUpstreamOptions;
  calls: FakeCall[];
  /** The bodies of the token counts asked (`countTokens`), in order. */
  counts: Record<string, unknown>[];
  /** Waits until every call so far ended, cut or finished. */
  settled(): Promise<void>;
  close(): Promise<void>;
}

type Body = Record<string, unknown>;
/** One SSE event; `output` marks those that carry answer text. */
type Event = { event?: string; data: unknown; output?: boolean };

/** The mock provider's input count: what the fake bills unless told otherwise. */
const mockInputTokens = (_api: FakeApi, body: Body) =>
  countPromptTokens({
    messages: body.messages,
    system: body.system,
    input: body.input,
    instructions: body.instructions,
  });

const newId = (prefix: string) => `${prefix}${randomBytes(12).toString('hex')}`;
const nowSeconds = () => Math.floor(Date.now() / 1000);

function capOf(api: FakeApi, body: Body): number | undefined {
  const generation = body.generationConfig as Body | undefined;
  const caps = {
    'openai.chat': body.max_completion_tokens ?? body.max_tokens,
    'openai.responses': body.max_output_tokens,
    'anthropic.messages': body.max_tokens,
    'gemini.generate': generation?.maxOutputTokens,
  };
  const value = caps[api];
  return typeof value === 'number' ? value : undefined;
}

/** The text of each of the answer's first `tokens` tokens: one-token words, or a text's tokens under a tokenizer. */
function tokenTexts(tokens: number, options: FakeUpstreamOptions): string[] {
  if (options.tokens) return tokenPieces(options.tokens.tokenizer, options.tokens.text, tokens);
  return Array.from({ length: tokens }, (_, i) => `${i === 0 ? '' : ' '}${WORDS[i % WORDS.length]}`);
}

/** The answer's text in events of `perEvent` tokens each. */
function replyPieces(texts: string[], perEvent: number): string[] {
  const pieces: string[] = [];
  for (let start = 0; start < texts.length; start += perEvent)
    pieces.push(texts.slice(start, start + perEvent).join(''));
  return pieces;
}

interface Answer {
  model: string;
  inputTokens: number;
  outputTokens: number;
  /** The cap cut the answer (only when the cap is honoured). */
  truncated: boolean;
  pieces: string[];
  text: string;
}

function chatUsage(answer: Answer) {
  return {
    prompt_tokens: answer.inputTokens,
    completion_tokens: answer.outputTokens,
    total_tokens: answer.inputTokens + answer.outputTokens,
    prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
    completion_tokens_details: {
      reasoning_tokens: 0,
      audio_tokens: 0,
      accepted_prediction_tokens: 0,
      rejected_prediction_tokens: 0,
    },
  };
}

function chatEvents(answer: Answer, includeUsage: boolean): Event[] {
  const head = {
    id: newId('chatcmpl-'),
    object: 'chat.completion.chunk',
    created: nowSeconds(),
    model: answer.model,
    service_tier: 'default',
    system_fingerprint: 'fp_fake',
  };
  const usageNull = includeUsage ? { usage: null } : {};
  const chunk = (delta: Body, finish: string | null) => ({
    ...head,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    ...usageNull,
  });
  const events: Event[] = [{ data: chunk({ role: 'assistant', content: '', refusal: null }, null) }];
  for (const piece of answer.pieces) events.push({ data: chunk({ content: piece }, null), output: true });
  events.push({ data: chunk({}, answer.truncated ? 'length' : 'stop') });
  if (includeUsage) events.push({ data: { ...head, choices: [], usage: chatUsage(answer) } });
  events.push({ data: '[DONE]' });
  return events;
}

function chatJson(answer: Answer) {
  return {
    id: newId('chatcmpl-'),
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
    usage: chatUsage(answer),
    service_tier: 'default',
    system_fingerprint: 'fp_fake',
  };
}

function responseObject(
  answer: Answer,
  ids: { response: string; message: string; created: number },
  body: Body,
  done: boolean,
) {
  const status = !done ? 'in_progress' : answer.truncated ? 'incomplete' : 'completed';
  return {
    id: ids.response,
    object: 'response',
    created_at: ids.created,
    status,
    error: null,
    incomplete_details: done && answer.truncated ? { reason: 'max_output_tokens' } : null,
    instructions: null,
    max_output_tokens: typeof body.max_output_tokens === 'number' ? body.max_output_tokens : null,
    model: answer.model,
    output: done ? [messageItem(answer, ids.message, true)] : [],
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
    usage: done ? responsesUsage(answer) : null,
    user: null,
    metadata: {},
  };
}

function responsesUsage(answer: Answer) {
  return {
    input_tokens: answer.inputTokens,
    input_tokens_details: { cached_tokens: 0 },
    output_tokens: answer.outputTokens,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: answer.inputTokens + answer.outputTokens,
  };
}

function messageItem(answer: Answer, id: string, done: boolean) {
  return {
    type: 'message',
    id,
    status: !done ? 'in_progress' : answer.truncated ? 'incomplete' : 'completed',
    role: 'assistant',
    content: done ? [{ type: 'output_text', text: answer.text, annotations: [], logprobs: [] }] : [],
  };
}

function responsesEvents(answer: Answer, body: Body): Event[] {
  const ids = { response: newId('resp_'), message: newId('msg_'), created: nowSeconds() };
  const events: Event[] = [];
  const push = (type: string, data: Body, output = false) =>
    events.push({ event: type, data: { type, sequence_number: events.length, ...data }, output });
  push('response.created', { response: responseObject(answer, ids, body, false) });
  push('response.in_progress', { response: responseObject(answer, ids, body, false) });
  push('response.output_item.added', { output_index: 0, item: messageItem(answer, ids.message, false) });
  const at = { item_id: ids.message, output_index: 0, content_index: 0 };
  push('response.content_part.added', {
    ...at,
    part: { type: 'output_text', text: '', annotations: [], logprobs: [] },
  });
  for (const piece of answer.pieces) push('response.output_text.delta', { ...at, delta: piece, logprobs: [] }, true);
  push('response.output_text.done', { ...at, text: answer.text, logprobs: [] });
  push('response.content_part.done', {
    ...at,
    part: { type: 'output_text', text: answer.text, annotations: [], logprobs: [] },
  });
  push('response.output_item.done', { output_index: 0, item: messageItem(answer, ids.message, true) });
  const final = responseObject(answer, ids, body, true);
  push(final.status === 'incomplete' ? 'response.incomplete' : 'response.completed', { response: final });
  return events;
}

function messagesUsage(answer: Answer, outputTokens: number) {
  return {
    input_tokens: answer.inputTokens,
    cache_creation_input_tokens: 0,
    cache_read_input_tokens: 0,
    output_tokens: outputTokens,
    service_tier: 'standard',
  };
}

function messagesJson(answer: Answer) {
  return {
    id: newId('msg_'),
    type: 'message',
    role: 'assistant',
    model: answer.model,
    content: [{ type: 'text', text: answer.text }],
    stop_reason: answer.truncated ? 'max_tokens' : 'end_turn',
    stop_sequence: null,
    usage: messagesUsage(answer, answer.outputTokens),
  };
}

function messagesEvents(answer: Answer): Event[] {
  const start = { ...messagesJson(answer), content: [], stop_reason: null, usage: messagesUsage(answer, 1) };
  const events: Event[] = [
    { event: 'message_start', data: { type: 'message_start', message: start } },
    {
      event: 'content_block_start',
      data: { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
    },
    { event: 'ping', data: { type: 'ping' } },
  ];
  for (const piece of answer.pieces) {
    const data = { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: piece } };
    events.push({ event: 'content_block_delta', data, output: true });
  }
  events.push({ event: 'content_block_stop', data: { type: 'content_block_stop', index: 0 } });
  events.push({
    event: 'message_delta',
    data: {
      type: 'message_delta',
      delta: { stop_reason: answer.truncated ? 'max_tokens' : 'end_turn', stop_sequence: null },
      usage: { output_tokens: answer.outputTokens },
    },
  });
  events.push({ event: 'message_stop', data: { type: 'message_stop' } });
  return events;
}

function geminiUsage(answer: Answer, outputTokens: number) {
  return {
    promptTokenCount: answer.inputTokens,
    candidatesTokenCount: outputTokens,
    totalTokenCount: answer.inputTokens + outputTokens,
  };
}

/** One `generateContent` answer (or stream chunk): its text, and the finish reason and usage when it is the last. */
function geminiChunk(answer: Answer, text: string, outputTokens: number, finished: boolean) {
  const finish = finished ? { finishReason: answer.truncated ? 'MAX_TOKENS' : 'STOP' } : {};
  return {
    candidates: [{ content: { parts: [{ text }], role: 'model' }, ...finish, index: 0 }],
    usageMetadata: geminiUsage(answer, outputTokens),
    modelVersion: answer.model,
    responseId: newId('resp'),
  };
}

/** Gemini streams chunks of text, each with the running usage, the last with the finish reason. */
function geminiEvents(answer: Answer, tokensPerEvent: number): Event[] {
  let sent = 0;
  return answer.pieces.map((piece, i) => {
    sent = Math.min(answer.outputTokens, sent + tokensPerEvent);
    return { data: geminiChunk(answer, piece, sent, i === answer.pieces.length - 1), output: true };
  });
}

const sseText = ({ event, data }: Event) =>
  `${event ? `event: ${event}\n` : ''}data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`;

/** Writes the events one per turn of the event loop, as a provider streams, until done or the connection closes. */
async function writeEvents(res: ServerResponse, call: FakeCall, events: Event[], split: boolean): Promise<void> {
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
  const write = async (text: string) => {
    call.written += text;
    if (!res.write(text)) await Promise.race([once(res, 'drain'), once(res, 'close')]);
    await new Promise((resolve) => setImmediate(resolve));
  };
  for (const event of events) {
    if (res.destroyed || call.aborted) return;
    const text = sseText(event);
    if (event.output) call.eventsWritten++;
    if (split) {
      const half = Math.floor(text.length / 2);
      await write(text.slice(0, half));
      if (res.destroyed || call.aborted) return;
      await write(text.slice(half));
    } else {
      await write(text);
    }
  }
  res.end();
}

async function readBody(req: IncomingMessage): Promise<Body> {
  let text = '';
  for await (const chunk of req) text += String(chunk);
  return JSON.parse(text) as Body;
}

/** The fake on an ephemeral port of 127.0.0.1. */
export async function startCapIgnoringUpstream(initial: Partial<FakeUpstreamOptions> = {}): Promise<FakeUpstream> {
  const options: FakeUpstreamOptions = {
    outputTokens: 2000,
    tokensPerEvent: 1,
    honourCap: false,
    splitEvents: false,
    billInput: mockInputTokens,
    delayMs: 0,
    ...initial,
  };
  const calls: FakeCall[] = [];
  const counts: Body[] = [];
  const pending = new Set<Promise<void>>();

  function answerCount(body: Body, res: ServerResponse): void {
    counts.push(body);
    const counting = options.countTokens;
    if (counting === 'hang') return;
    if (counting === 'fail') {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end('{"type":"error","error":{"type":"api_error","message":"Internal server error"}}');
      return;
    }
    const inputTokens = counting!.overhead + counting!.tokenizer.encode(messagesText(body)).length;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ input_tokens: inputTokens }));
  }

  async function answer(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const gemini = GEMINI_ROUTE.exec(req.url ?? '');
    const api = gemini ? 'gemini.generate' : ROUTES.get(req.url ?? '');
    const body = await readBody(req);
    if (req.url === '/v1/messages/count_tokens' && req.method === 'POST' && options.countTokens !== undefined) {
      answerCount(body, res);
      return;
    }
    if (!api || req.method !== 'POST') {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"message":"not found"}}');
      return;
    }
    const stream = gemini ? gemini[2] === 'streamGenerateContent' : body.stream === true;
    const cap = capOf(api, body);
    const capped = options.honourCap && cap !== undefined;
    const texts = tokenTexts(capped ? Math.min(cap, options.outputTokens) : options.outputTokens, options);
    // A text shorter than the answer asked for ends by itself: the answer is its tokens.
    const outputTokens = texts.length;
    const available = options.tokens
      ? Math.min(options.outputTokens, options.tokens.tokenizer.encode(options.tokens.text).length)
      : options.outputTokens;
    const inputTokens = options.billInput(api, body);
    const model = gemini ? gemini[1]! : String(body.model);
    const call: FakeCall = {
      api,
      model,
      stream,
      cap,
      usage: { inputTokens, outputTokens },
      eventsWritten: 0,
      aborted: false,
      finished: false,
      written: '',
    };
    calls.push(call);
    res.on('close', () => {
      call.finished = res.writableFinished;
      call.aborted = !res.writableFinished;
    });
    if (options.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, options.delayMs));
    if (res.destroyed) return;
    const pieces = replyPieces(texts, stream ? options.tokensPerEvent : Math.max(1, outputTokens));
    const reply: Answer = {
      model,
      inputTokens,
      outputTokens,
      truncated: outputTokens < available,
      pieces,
      text: pieces.join(''),
    };
    if (!stream) {
      const ids = { response: newId('resp_'), message: newId('msg_'), created: nowSeconds() };
      const answerBody =
        api === 'openai.chat'
          ? chatJson(reply)
          : api === 'openai.responses'
            ? responseObject(reply, ids, body, true)
            : api === 'gemini.generate'
              ? geminiChunk(reply, reply.text, outputTokens, true)
              : messagesJson(reply);
      const json = JSON.stringify(answerBody);
      call.written = json;
      res.writeHead(200, { 'content-type': 'application/json' }).end(json);
      return;
    }
    const streamOptions = body.stream_options;
    const includeUsage =
      typeof streamOptions === 'object' && streamOptions !== null && (streamOptions as Body).include_usage === true;
    const events =
      api === 'openai.chat'
        ? chatEvents(reply, includeUsage)
        : api === 'openai.responses'
          ? responsesEvents(reply, body)
          : api === 'gemini.generate'
            ? geminiEvents(reply, options.tokensPerEvent)
            : messagesEvents(reply);
    await writeEvents(res, call, events, options.splitEvents);
  }

  const server: Server = createServer((req, res) => {
    const done = answer(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500).end();
      else res.destroy();
    });
    pending.add(done);
    void done.finally(() => pending.delete(done));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    options,
    calls,
    counts,
    async settled() {
      await Promise.all([...pending]);
    },
    close: () => closeServer(server),
  };
}

/**
 * The gateway config that serves every provider kind from a fake at `url`: OpenAI, Anthropic, Gemini, a self-hosted
 * model on an openai-compatible upstream (`llama-3.1-8b`), a model of an upstream named openai with no tokenizer
 * (`llama-on-openai`), and a model group whose OpenAI chat clients Claude serves (`claude-via-chat`). The two config
 * models cost `prices`.
 */
export function everyProviderKind(url: string, prices: { inputPerMTok: number; outputPerMTok: number }) {
  return {
    upstreams: {
      openai: { baseUrl: `${url}/v1` },
      anthropic: { baseUrl: url },
      google: { baseUrl: `${url}/v1beta` },
      vllm: { baseUrl: `${url}/v1`, api: 'openai-compatible' as const },
    },
    models: {
      'llama-3.1-8b': { provider: 'vllm', maxOutputTokens: 4096, contextWindow: 131072, ...prices },
      'llama-on-openai': { provider: 'openai', maxOutputTokens: 4096, ...prices },
    },
    modelGroups: {
      'claude-via-chat': {
        strategy: 'fallback' as const,
        targets: [{ upstream: 'anthropic', model: 'claude-haiku-4-5' }],
      },
    },
  };
}

/** Every provider kind `everyProviderKind` serves, as a client meets it. */
export const PROVIDER_KINDS: ProviderCase<FakeApi>[] = [
  { label: 'gpt-4o-mini (OpenAI chat)', api: 'openai.chat', model: 'gpt-4o-mini', tokenizer: 'o200k' },
  { label: 'gpt-4o (OpenAI Responses)', api: 'openai.responses', model: 'gpt-4o', tokenizer: 'o200k' },
  { label: 'Claude (Anthropic Messages)', api: 'anthropic.messages', model: 'claude-haiku-4-5', tokenizer: 'claude' },
  { label: 'Gemini (generateContent)', api: 'gemini.generate', model: 'gemini-2.5-flash', tokenizer: 'gemini' },
  // A model added in the config, on an OpenAI-compatible upstream, with no tokenizer named: counted with o200k_base.
  { label: 'self-hosted Llama (OpenAI-compatible)', api: 'openai.chat', model: 'llama-3.1-8b', tokenizer: 'llama3' },
  // The same model, named `provider: "openai"` in the config without a tokenizer.
  { label: 'Llama behind an upstream named openai', api: 'openai.chat', model: 'llama-on-openai', tokenizer: 'llama3' },
  // A model group whose OpenAI-chat clients are served by Claude: the stream is translated between APIs.
  {
    label: 'Claude through a translating model group',
    api: 'openai.chat',
    model: 'claude-via-chat',
    tokenizer: 'claude',
  },
];
