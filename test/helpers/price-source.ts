// Test helpers for price sources: a LiteLLM price file, and an OpenAI upstream that answers at the service tier asked.
import { readFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { expect } from '@jest/globals';
import type { FakeUpstreamRequest } from './proxy.js';

/** Every answer reports this usage, so a record's cost is its prices times 1,000 tokens of each. */
export const TOKENS = 1000;

/** A LiteLLM price file: gpt-4o-mini at `input` / `output` USD per 1M tokens, flex at half, priority at double. */
export function priceFile(input: number, output: number, extra: Record<string, unknown> = {}): string {
  const perToken = (usd: number) => usd / 1_000_000;
  return JSON.stringify({
    sample_spec: { input_cost_per_token: 0, litellm_provider: 'openai' },
    'gpt-4o-mini': {
      litellm_provider: 'openai',
      mode: 'chat',
      input_cost_per_token: perToken(input),
      output_cost_per_token: perToken(output),
      input_cost_per_token_flex: perToken(input / 2),
      output_cost_per_token_flex: perToken(output / 2),
      input_cost_per_token_priority: perToken(input * 2),
      output_cost_per_token_priority: perToken(output * 2),
      ...extra,
    },
    'bedrock/some-model': { litellm_provider: 'bedrock', input_cost_per_token: 1e-6, output_cost_per_token: 1e-6 },
  });
}

/** nano-USD of 1,000 input and 1,000 output tokens at these USD-per-1M prices. */
export const costOf = (input: number, output: number) => Math.round(TOKENS * input * 1000 + TOKENS * output * 1000);

/** What `/admin/prices` answers. */
export interface PriceStatus {
  source: string | null;
  version: string;
  loadedAt: string | null;
  changes: { model: string; before: { inputPerMTok: number } | null; after: { inputPerMTok: number } | null }[];
  lastError: { message: string } | null;
  failures: number;
}

/** A gateway's `/admin/prices`, read with the admin key. */
export async function readPrices(url: string, adminKey: string): Promise<PriceStatus> {
  const response = await fetch(`${url}/admin/prices`, { headers: { authorization: `Bearer ${adminKey}` } });
  expect(response.status).toBe(200);
  return (await response.json()) as PriceStatus;
}

/** The spend of a tenant's first budget, as `/admin/budgets` shows it. */
export async function tenantSpend(url: string, adminKey: string, tenant: string) {
  const response = await fetch(`${url}/admin/budgets/tenant/${tenant}`, {
    headers: { authorization: `Bearer ${adminKey}` },
  });
  expect(response.status).toBe(200);
  const { budgets } = (await response.json()) as { budgets: { spentNanoUsd: number; reservedNanoUsd: number }[] };
  return budgets[0]!;
}

interface TierAsked {
  model?: string;
  service_tier?: string;
  max_tokens?: number;
  speed?: string;
  inference_geo?: string;
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  messages?: { content?: string }[];
  input?: string;
}

const sse = (res: ServerResponse, data: unknown, event?: string) =>
  res.write(`${event ? `event: ${event}\n` : ''}data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);

const USAGE_CHAT = { prompt_tokens: TOKENS, completion_tokens: TOKENS, total_tokens: 2 * TOKENS };
const USAGE_RESPONSES = {
  input_tokens: TOKENS,
  input_tokens_details: { cached_tokens: 0 },
  output_tokens: TOKENS,
  output_tokens_details: { reasoning_tokens: 0 },
  total_tokens: 2 * TOKENS,
};

/** A Responses API answer: its tier is the one asked for (`auto` when none) until served, then the one served. */
function responsesBody(model: string | undefined, status: 'in_progress' | 'completed', tier: string) {
  const done = status === 'completed';
  const message = { type: 'message', id: 'msg_tier', status, role: 'assistant' };
  return {
    id: 'resp_tier',
    object: 'response',
    created_at: 1,
    status,
    model,
    service_tier: tier,
    output: done ? [{ ...message, content: [{ type: 'output_text', text: 'ok', annotations: [] }] }] : [],
    usage: done ? USAGE_RESPONSES : null,
  };
}

/**
 * Anthropic's usage of an answer made of two calls, as its compaction docs show it (the summary call in `iterations`
 * only), served at fast speed in the US.
 */
export const COMPACTED_FAST_US_USAGE: Record<string, unknown> = {
  ...(JSON.parse(
    readFileSync(
      new URL('../../packages/providers/test/fixtures/anthropic-compacted-usage.json', import.meta.url),
      'utf8',
    ),
  ) as Record<string, unknown>),
  service_tier: 'standard',
  speed: 'fast',
  inference_geo: 'us',
};

/**
 * Anthropic's usage of a one-call answer to `body`: 1 input token, its whole output cap, at the speed and region it
 * asked for (standard and global when it names none); a prompt that says `unsaid` names neither, as older answers.
 */
function servedAsAsked(body: TierAsked): Record<string, unknown> {
  const usage = {
    input_tokens: 1,
    cache_creation_input_tokens: 0,
    cache_read_input_tokens: 0,
    output_tokens: body.max_tokens ?? 1,
    service_tier: 'standard',
  };
  if (body.messages?.[0]?.content?.includes('unsaid')) return usage;
  return { ...usage, speed: body.speed ?? 'standard', inference_geo: body.inference_geo ?? 'global' };
}

/**
 * An Anthropic message answering `body`, whole or as its event stream: with COMPACTED_FAST_US_USAGE when its prompt
 * says `compact`, else served as asked (`servedAsAsked`).
 */
function answerMessage(body: TierAsked, res: ServerResponse): void {
  const usage = body.messages?.[0]?.content?.includes('compact') ? COMPACTED_FAST_US_USAGE : servedAsAsked(body);
  const message = {
    id: 'msg_compacted',
    type: 'message',
    role: 'assistant',
    model: body.model,
    content: [{ type: 'text', text: 'ok' }],
    stop_reason: 'end_turn',
    stop_sequence: null,
    usage,
  };
  if (!body.stream) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(message));
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  const { iterations: _later, ...started } = usage;
  const events: Record<string, unknown>[] = [
    {
      type: 'message_start',
      message: { ...message, content: [], stop_reason: null, usage: { ...started, output_tokens: 1 } },
    },
    { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
    { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'ok' } },
    { type: 'content_block_stop', index: 0 },
    { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage },
    { type: 'message_stop' },
  ];
  for (const event of events) sse(res, event, event.type as string);
  res.end();
}

/**
 * An OpenAI upstream (Chat Completions and Responses, JSON and streams) that serves the tier asked for (`default` when
 * none), or the one a prompt's `serve:<tier>` names. A prompt with `refuse` gets 429 as OpenAI answers when flex
 * capacity is short; a stream whose prompt says `hold:<tag>` sends its first event, then waits for `release(tag)`.
 */
export function tierUpstream() {
  const held = new Map<string, { started: Promise<void>; start(): void; release(): void; released: Promise<void> }>();
  const gate = (tag: string) => {
    let entry = held.get(tag);
    if (entry === undefined) {
      const parts: { start?: () => void; release?: () => void } = {};
      const started = new Promise<void>((resolve) => (parts.start = resolve));
      const released = new Promise<void>((resolve) => (parts.release = resolve));
      entry = { started, released, start: parts.start!, release: parts.release! };
      held.set(tag, entry);
    }
    return entry;
  };

  async function streamChat(body: TierAsked, served: string, res: ServerResponse, tag: string | undefined) {
    const chunk = (choices: unknown[], usage?: unknown) => ({
      id: 'chatcmpl-tier',
      object: 'chat.completion.chunk',
      created: 1,
      model: body.model,
      service_tier: served,
      system_fingerprint: null,
      choices,
      ...(usage === undefined ? {} : { usage }),
    });
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    sse(res, chunk([{ index: 0, delta: { role: 'assistant', content: 'o' }, finish_reason: null }]));
    if (tag !== undefined) {
      gate(tag).start();
      await gate(tag).released;
    }
    sse(res, chunk([{ index: 0, delta: { content: 'k' }, finish_reason: 'stop' }]));
    if (body.stream_options?.include_usage) sse(res, chunk([], USAGE_CHAT));
    sse(res, '[DONE]');
    res.end();
  }

  function streamResponses(body: TierAsked, served: string, res: ServerResponse) {
    const asked = body.service_tier ?? 'auto';
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const events: [string, Record<string, unknown>][] = [
      ['response.created', { response: responsesBody(body.model, 'in_progress', asked) }],
      ['response.output_text.delta', { item_id: 'msg_tier', output_index: 0, content_index: 0, delta: 'ok' }],
      ['response.completed', { response: responsesBody(body.model, 'completed', served) }],
    ];
    for (const [index, [type, fields]] of events.entries()) sse(res, { type, sequence_number: index, ...fields }, type);
    res.end();
  }

  function answer(request: FakeUpstreamRequest, res: ServerResponse): void {
    const body = request.body as TierAsked;
    if (request.url.endsWith('/v1/messages')) return answerMessage(body, res);
    const text = body.messages?.[0]?.content ?? body.input ?? '';
    if (text.includes('refuse')) {
      res.writeHead(429, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          error: { message: 'Flex capacity is short', type: 'rate_limit', code: 'resource_unavailable' },
        }),
      );
      return;
    }
    const served = /serve:(\w+)/.exec(text)?.[1] ?? body.service_tier ?? 'default';
    const responses = request.url.endsWith('/responses');
    if (body.stream && responses) return streamResponses(body, served, res);
    if (body.stream) return void streamChat(body, served, res, /hold:(\w+)/.exec(text)?.[1]);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify(
        responses
          ? responsesBody(body.model, 'completed', served)
          : {
              id: 'chatcmpl-tier',
              object: 'chat.completion',
              created: 1,
              model: body.model,
              service_tier: served,
              choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
              usage: USAGE_CHAT,
            },
      ),
    );
  }

  return {
    answer,
    /** Resolves once the stream held by `tag` sent its first event. */
    started: (tag: string) => gate(tag).started,
    /** Lets the stream held by `tag` finish. */
    release: (tag: string) => gate(tag).release(),
  };
}
