// Fake OpenAI and Anthropic upstreams for the routing tests: real HTTP servers whose answer each test sets.
import type { ServerResponse } from 'node:http';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { createMemoryStores } from '@tollgate/core';
import type { TollgateStores } from '@tollgate/core';
import type { ReservationLedger } from '@tollgate/core/store-contracts';
import type { GatewayConfig } from '../../packages/gateway/src/config/index.js';
import { newApiKey, readUsageLog, sha256Hex, startFakeUpstream, startProxy } from './proxy.js';
import type { FakeUpstream, FakeUpstreamRequest, RunningProxy } from './proxy.js';

export type Answer = (request: FakeUpstreamRequest, res: ServerResponse) => void;

/** A fake upstream whose answer can change between calls. */
export interface SwitchableUpstream extends FakeUpstream {
  answer: Answer;
}

export async function startSwitchableUpstream(answer: Answer): Promise<SwitchableUpstream> {
  let current = answer;
  const server = await startFakeUpstream((request, res) => current(request, res));
  // An accessor, not a copied value: a test swaps the answer while the server runs.
  return Object.defineProperty(server, 'answer', {
    get: () => current,
    set: (next: Answer) => (current = next),
    enumerable: true,
  }) as SwitchableUpstream;
}

export interface Usage {
  input: number;
  output: number;
  /** Anthropic's prompt-cache reads and writes, beside `input` (Anthropic's `input_tokens` leaves them out). */
  cacheRead?: number;
  cacheWrite?: number;
}

/** Anthropic's `usage` of an answer's input, with the cache counts when the usage has any. */
function anthropicInputUsage(usage: Usage): Record<string, number> {
  return {
    input_tokens: usage.input,
    ...(usage.cacheRead === undefined ? {} : { cache_read_input_tokens: usage.cacheRead }),
    ...(usage.cacheWrite === undefined ? {} : { cache_creation_input_tokens: usage.cacheWrite }),
  };
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

function sse(res: ServerResponse, events: string[]): void {
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  for (const event of events) res.write(event);
  res.end();
}

/** An OpenAI chat answer (JSON or stream, as the request asks), with a text or a tool call. */
export function openAiAnswer(
  model: string,
  usage: Usage,
  tool?: { name: string; args: string },
  options: { streamUsage?: boolean } = {},
): Answer {
  return (request, res) => {
    const body = request.body as { stream?: boolean };
    const message = tool
      ? {
          role: 'assistant',
          content: null,
          tool_calls: [{ id: 'call_1', type: 'function', function: { name: tool.name, arguments: tool.args } }],
        }
      : { role: 'assistant', content: 'Hello there' };
    const finish = tool ? 'tool_calls' : 'stop';
    const usageBody = {
      prompt_tokens: usage.input,
      completion_tokens: usage.output,
      total_tokens: usage.input + usage.output,
    };
    if (!body.stream) {
      json(res, 200, {
        id: 'chatcmpl-1',
        object: 'chat.completion',
        created: 1,
        model,
        choices: [{ index: 0, message, finish_reason: finish, logprobs: null }],
        usage: usageBody,
      });
      return;
    }
    const chunk = (delta: unknown, finishReason: string | null) =>
      `data: ${JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model, choices: [{ index: 0, delta, finish_reason: finishReason }] })}\n\n`;
    const events = tool
      ? [
          chunk(
            {
              role: 'assistant',
              tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: tool.name, arguments: '' } }],
            },
            null,
          ),
          chunk({ tool_calls: [{ index: 0, function: { arguments: tool.args } }] }, null),
          chunk({}, finish),
        ]
      : [chunk({ role: 'assistant', content: 'Hello' }, null), chunk({ content: ' there' }, null), chunk({}, finish)];
    // A self-hosted server may send no usage chunk at all (options.streamUsage false).
    if (options.streamUsage !== false)
      events.push(
        `data: ${JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model, choices: [], usage: usageBody })}\n\n`,
      );
    events.push('data: [DONE]\n\n');
    sse(res, events);
  };
}

/** An Anthropic Messages answer (JSON or stream), with a text or a tool call. */
export function anthropicAnswer(
  model: string,
  usage: Usage,
  tool?: { name: string; input: Record<string, unknown> },
): Answer {
  return (request, res) => {
    const body = request.body as { stream?: boolean };
    const content = tool
      ? [{ type: 'tool_use', id: 'toolu_1', name: tool.name, input: tool.input }]
      : [{ type: 'text', text: 'Hello there' }];
    const stop = tool ? 'tool_use' : 'end_turn';
    if (!body.stream) {
      json(res, 200, {
        id: 'msg_1',
        type: 'message',
        role: 'assistant',
        model,
        content,
        stop_reason: stop,
        stop_sequence: null,
        usage: { ...anthropicInputUsage(usage), output_tokens: usage.output },
      });
      return;
    }
    const event = (type: string, data: unknown) =>
      `event: ${type}\ndata: ${JSON.stringify({ type, ...(data as object) })}\n\n`;
    const events = [
      event('message_start', {
        message: {
          id: 'msg_1',
          type: 'message',
          role: 'assistant',
          model,
          content: [],
          stop_reason: null,
          stop_sequence: null,
          usage: { ...anthropicInputUsage(usage), output_tokens: 1 },
        },
      }),
    ];
    if (tool) {
      events.push(
        event('content_block_start', {
          index: 0,
          content_block: { type: 'tool_use', id: 'toolu_1', name: tool.name, input: {} },
        }),
        event('content_block_delta', {
          index: 0,
          delta: { type: 'input_json_delta', partial_json: JSON.stringify(tool.input) },
        }),
      );
    } else {
      events.push(
        event('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }),
        event('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'Hello there' } }),
      );
    }
    events.push(
      event('content_block_stop', { index: 0 }),
      event('message_delta', {
        delta: { stop_reason: stop, stop_sequence: null },
        usage: { output_tokens: usage.output },
      }),
      event('message_stop', {}),
    );
    sse(res, events);
  };
}

/** An OpenAI Responses answer (JSON or stream, as the request asks), with a text or a function call. */
export function responsesAnswer(model: string, usage: Usage, tool?: { name: string; args: string }): Answer {
  return (request, res) => {
    const item = tool
      ? { type: 'function_call', id: 'fc_1', call_id: 'call_1', name: tool.name, arguments: tool.args }
      : {
          ...{ type: 'message', id: 'msg_1', role: 'assistant' },
          content: [{ type: 'output_text', text: 'Hello there', annotations: [] }],
        };
    const response = (status: string, output: unknown[], usageBody: unknown) => ({
      ...{ id: 'resp_1', object: 'response', created_at: 1, status, model, output },
      usage: usageBody,
    });
    const done = response('completed', [{ ...item, status: 'completed' }], {
      input_tokens: usage.input,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: usage.output,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: usage.input + usage.output,
    });
    if (!(request.body as { stream?: boolean }).stream) {
      json(res, 200, done);
      return;
    }
    const event = (type: string, data: object, sequence: number) =>
      `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: sequence, ...data })}\n\n`;
    sse(res, [
      event('response.created', { response: response('in_progress', [], null) }, 0),
      event('response.output_item.done', { output_index: 0, item: done.output[0] }, 1),
      event('response.completed', { response: done }, 2),
    ]);
  };
}

/** An error answer in OpenAI's shape. */
export function failWith(status: number, headers: Record<string, string> = {}): Answer {
  return (_request, res) =>
    json(
      res,
      status,
      { error: { message: `failing with ${status}`, type: 'server_error', code: null, param: null } },
      headers,
    );
}

/** Answers the calls in turn with `answers`, the last one from then on. */
export function inTurn(...answers: Answer[]): Answer {
  let call = 0;
  return (request, res) => answers[Math.min(call++, answers.length - 1)]!(request, res);
}

/** Every reservation id the ledger granted, and how many times each was settled or released. */
export interface LedgerWatch {
  granted: string[];
  closes: Map<string, number>;
  /** Ids granted but closed other than exactly once. */
  notClosedOnce(): string[];
}

/** Memory stores whose ledger counts, per reservation, the settles and releases it gets. */
export function watchedStores(): { stores: TollgateStores; watch: LedgerWatch } {
  const stores = createMemoryStores();
  const ledger = stores.ledger;
  const granted: string[] = [];
  const closes = new Map<string, number>();
  const close = (id: string) => closes.set(id, (closes.get(id) ?? 0) + 1);
  const counted: Partial<ReservationLedger> = {
    reserve: async (request) => {
      const result = await ledger.reserve(request);
      if (result.ok) granted.push(request.id);
      return result;
    },
    settle: (id, amount) => {
      close(id);
      return ledger.settle(id, amount);
    },
    release: (id) => {
      close(id);
      return ledger.release(id);
    },
  };
  // Proxies, not copies: the memory stores keep private state their methods read through `this`.
  const bound = <T extends object>(target: T, overrides: Record<PropertyKey, unknown>) =>
    new Proxy(target, {
      get(object, property) {
        if (Object.hasOwn(overrides, property)) return overrides[property];
        const value: unknown = Reflect.get(object, property, object);
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(object) : value;
      },
    });
  const watched = bound(ledger, counted);
  return {
    stores: bound(stores, { ledger: watched }),
    watch: { granted, closes, notClosedOnce: () => granted.filter((id) => closes.get(id) !== 1) },
  };
}

export interface RoutingProxy {
  proxy: RunningProxy;
  clientKey: string;
  /** Sees /healthz's details. */
  adminKey: string;
  usageLog: string;
  watch: LedgerWatch;
  records(): Promise<ReturnType<typeof readUsageLog>>;
  close(): Promise<void>;
}

/** The proxy with the given upstreams and routing config, a budgeted key, a usage log and a watched ledger. */
export async function startRoutingProxy(
  config: Pick<
    GatewayConfig,
    | 'upstreams'
    | 'modelGroups'
    | 'requestClasses'
    | 'retry'
    | 'circuitBreaker'
    | 'healthProbe'
    | 'healthChecks'
    | 'models'
    | 'alerts'
  >,
  budgetUsd = 10,
): Promise<RoutingProxy> {
  const clientKey = newApiKey();
  const adminKey = newApiKey();
  const usageLog = path.join(mkdtempSync(path.join(tmpdir(), 'tollgate-routing-')), 'usage.jsonl');
  const { stores, watch } = watchedStores();
  const proxy = await startProxy(
    {
      ...config,
      usageLog,
      adminKeySha256: sha256Hex(adminKey),
      spool: false,
      // The routing tests read /metrics without an admin key.
      metrics: { public: true },
      tenants: { acme: { budget: { usd: budgetUsd, period: 'day' } } },
      keys: [{ id: 'acme-key', sha256: sha256Hex(clientKey), tenant: 'acme', scopes: ['chat'] }],
    },
    { stores },
  );
  return {
    proxy,
    clientKey,
    adminKey,
    usageLog,
    watch,
    async records() {
      await proxy.app.flushUsage();
      return readUsageLog(usageLog);
    },
    async close() {
      await proxy.close();
      await stores.close();
    },
  };
}

/**
 * What a routing test opens (upstreams and proxies), closed after each test: `upstream()` and `routing()`
 * start them, `closeAll()` (in afterEach) closes the proxies first, then the upstreams.
 */
export function routingFixture() {
  const open: { close(): Promise<void> }[] = [];
  return {
    async upstream(answer: Answer): Promise<SwitchableUpstream> {
      const server = await startSwitchableUpstream(answer);
      open.push(server);
      return server;
    },
    async routing(
      config: Parameters<typeof startRoutingProxy>[0],
      budgetUsd?: number,
    ): Promise<{ routed: RoutingProxy; client: OpenAI }> {
      const routed = await startRoutingProxy(config, budgetUsd);
      open.unshift(routed);
      return {
        routed,
        client: new OpenAI({ apiKey: routed.clientKey, baseURL: `${routed.proxy.url}/v1`, maxRetries: 0 }),
      };
    },
    async closeAll(): Promise<void> {
      while (open.length > 0) await open.pop()!.close();
    },
  };
}

/** A short chat completion of `model` (extra fields merged in). */
export const ask = (
  client: OpenAI,
  model: string,
  extra: Partial<OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming> = {},
) => client.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 20, ...extra });
