// The OpenAI Agents SDK pointed at the gateway as its users point it: a tool loop over the Responses API, each turn
// metered from the upstream's usage, and refusals surfacing as the OpenAI errors the SDK's runner rethrows.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Agent, OpenAIProvider, Runner, setTracingDisabled, tool } from '@openai/agents';
import OpenAI from 'openai';
import { z } from 'zod';
import { caught } from './helpers/proxy.js';
import { clientStoreKinds, SCRIPTED_MODEL, startClientGateway } from './helpers/client-gateway.js';
import type { ClientGateway } from './helpers/client-gateway.js';
import { anthropicAnswer, inTurn, responsesAnswer } from './helpers/routing-upstreams.js';
import type { Answer, Usage } from './helpers/routing-upstreams.js';
import { mkdtempSync, rmSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createMemoryStores, DEFAULT_PRICES } from '@tollgate/core';
import { codexExec, findCodex } from './helpers/codex.js';
import { claudePrint, findClaudeCode } from './helpers/claude-code.js';

// Traces would be exported to OpenAI's own API: the tests reach no network but their own.
setTracingDisabled(true);

const weather = tool({
  name: 'weather',
  description: 'The weather in a city.',
  parameters: z.object({ city: z.string() }),
  execute: ({ city }) => Promise.resolve(`sunny in ${city}`),
});

const agent = (model: string) =>
  new Agent({ name: 'forecaster', instructions: 'Answer briefly.', model, tools: [weather] });

describe.each(clientStoreKinds('agents'))(
  'the OpenAI Agents SDK through the gateway on %s stores',
  (_kind, storesFor) => {
    let gateway: ClientGateway;
    /** A runner as its users configure one: an OpenAI client on the gateway's base URL with a tollgate key. */
    const runner = (key: string) =>
      new Runner({
        modelProvider: new OpenAIProvider({
          openAIClient: new OpenAI({ apiKey: key, baseURL: `${gateway.url}/v1`, maxRetries: 0 }),
        }),
      });

    beforeAll(async () => {
      gateway = await startClientGateway(storesFor());
    });

    afterAll(async () => {
      await gateway.close();
    });

    it('a tool loop over the Responses API: the call, its output sent back, each turn metered from its usage', async () => {
      gateway.scripted.answer = inTurn(
        responsesAnswer(SCRIPTED_MODEL, { input: 901, output: 13 }, { name: 'weather', args: '{"city":"Paris"}' }),
        responsesAnswer(SCRIPTED_MODEL, { input: 950, output: 5 }),
      );
      const result = await runner(gateway.keys.answered).run(agent(SCRIPTED_MODEL), 'The weather in Paris?');
      expect(result.finalOutput).toBe('Hello there');
      expect(gateway.scripted.requests.map((request) => request.url).slice(-2)).toEqual([
        '/v1/responses',
        '/v1/responses',
      ]);
      expect(gateway.scripted.requests.at(-1)?.body).toMatchObject({
        input: expect.arrayContaining([
          expect.objectContaining({ type: 'function_call_output', call_id: 'call_1', output: 'sunny in Paris' }),
        ]),
      });
      const turns = await gateway.newRecords('answered', 2);
      expect(turns.map(({ inputTokens, outputTokens }) => [inputTokens, outputTokens])).toEqual([
        [901, 13],
        [950, 5],
      ]);
      expect(turns.every((record) => record.route === '/v1/responses' && record.usageSource === 'provider')).toBe(true);
      expect(result.state.usage).toMatchObject({ inputTokens: 1851, outputTokens: 18, requests: 2 });
    });

    it('a streamed run on the mock: answered and metered from the response.completed usage', async () => {
      const result = await runner(gateway.keys.answered).run(agent('gpt-4o-mini'), 'Hello there', { stream: true });
      let text = '';
      for await (const delta of result.toTextStream()) text += delta;
      await result.completed;
      expect(text.split(' ')).toHaveLength(24);
      const [record] = await gateway.newRecords('answered');
      expect(record).toMatchObject({
        route: '/v1/responses',
        stream: true,
        inputTokens: result.state.usage.inputTokens,
        outputTokens: 24,
        usageSource: 'provider',
      });
    });

    it('refused by a budget and by a request limit: the OpenAI SDK error the runner rethrows, with status and code', async () => {
      const budget = await caught(runner(gateway.keys.broke).run(agent('gpt-4o-mini'), 'Hi'));
      expect(budget).toBeInstanceOf(OpenAI.RateLimitError);
      expect(budget).toMatchObject({ status: 429, code: 'insufficient_quota' });

      await runner(gateway.keys.limited).run(agent('gpt-4o-mini'), 'Hi');
      const limited = await caught(runner(gateway.keys.limited).run(agent('gpt-4o-mini'), 'Hi'));
      expect(limited).toBeInstanceOf(OpenAI.RateLimitError);
      expect(limited).toMatchObject({ status: 429, code: 'rate_limit_exceeded' });
    });
  },
);

// Codex (npm @openai/codex) with its built-in OpenAI provider on the gateway's base URL: it opens the Responses
// WebSocket first; the gateway takes it at once (no 405, no reconnect, no fall back to HTTP) and bills its turn.
const codex = findCodex();

// A machine that cannot have Codex (no npm registry, no CODEX_BIN) fails the case: a real client is not skipped.
describe('Codex through the gateway', () => {
  let gateway: ClientGateway;
  let home: string;
  const upgrades: string[] = [];
  /** Requests that came over the network (not a WebSocket message's in-process POST). */
  const network: string[] = [];

  beforeAll(async () => {
    const stores = createMemoryStores();
    gateway = await startClientGateway({ stores, release: () => stores.close() });
    const { server, app } = gateway.proxy;
    server.on('upgrade', (req: IncomingMessage) => upgrades.push(`${req.method} ${req.url}`));
    server.on('request', (req: IncomingMessage) => {
      if (req.socket instanceof Socket) network.push(`${req.method} ${req.url}`);
    });
    app.attachResponsesSocket(server);
    home = mkdtempSync(path.join(tmpdir(), 'tollgate-codex-home-'));
  });

  afterAll(async () => {
    await gateway.close();
    rmSync(home, { recursive: true, force: true });
  });

  it('codex exec: one WebSocket upgrade, no reconnect, no HTTP fallback, its turn metered and billed', async () => {
    gateway.scripted.answer = responsesAnswer(SCRIPTED_MODEL, { input: 1234, output: 7 });
    const sentBefore = gateway.scripted.requests.length;
    if (!codex) throw new Error('the Codex CLI could not be installed from npm: set CODEX_BIN to a codex executable');
    const run = await codexExec(codex, {
      baseUrl: `${gateway.url}/v1`,
      apiKey: gateway.keys.answered,
      model: SCRIPTED_MODEL,
      prompt: 'Say hello.',
      home,
      cwd: home,
    });
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('Hello there');
    expect(run.stderr).not.toMatch(/Reconnecting|Falling back from WebSockets/);
    expect(upgrades).toEqual(['GET /v1/responses']);
    expect(network.filter((line) => line.startsWith('POST /v1/responses'))).toEqual([]);
    // Its warm-up (`generate: false`) is answered by the gateway: one call upstream, the turn itself.
    const sent = gateway.scripted.requests.slice(sentBefore);
    expect(sent.map((request) => request.url)).toEqual(['/v1/responses']);
    expect(sent[0]!.body).not.toHaveProperty('generate');
    const [record] = await gateway.newRecords('answered');
    expect(record).toMatchObject({
      route: '/v1/responses',
      model: SCRIPTED_MODEL,
      stream: true,
      inputTokens: 1234,
      outputTokens: 7,
      usageSource: 'provider',
      // 1234 input tokens at $1/M and 7 output at $2/M: 1,248,000 nano-USD.
      costNanoUsd: 1_248_000,
    });
  }, 150_000);
});

// Claude Code (npm @anthropic-ai/claude-code) on the gateway as ANTHROPIC_BASE_URL with a tollgate key, at its default
// model: every call it makes is answered from the script, and billed at the catalogue's price of the model it chose.
const claudeCode = findClaudeCode();

/** Nano-USD of `tokens` at `usdPerMTok` (USD per 1M tokens: 1,000 nano-USD per token per dollar). */
const nanoUsd = (tokens: number, usdPerMTok: number | undefined) => tokens * Math.round((usdPerMTok ?? NaN) * 1000);

/** What the catalogue's row of `model` charges for an Anthropic `usage` with 5-minute cache writes. */
function catalogueCost(model: string, usage: Required<Usage>): number {
  const row = DEFAULT_PRICES[model];
  if (!row) throw new Error(`the catalogue has no row for ${model}`);
  return (
    nanoUsd(usage.input, row.inputPerMTok) +
    nanoUsd(usage.cacheRead, row.cachedInputPerMTok) +
    nanoUsd(usage.cacheWrite, row.cacheWritePerMTok) +
    nanoUsd(usage.output, row.outputPerMTok)
  );
}

// A machine that cannot have Claude Code (no npm registry, no CLAUDE_BIN) fails the case: a real client is not skipped.
describe('Claude Code through the gateway', () => {
  let gateway: ClientGateway;
  let home: string;
  /** The session header of each request Claude Code sent the gateway. */
  const sessions: (string | string[] | undefined)[] = [];

  beforeAll(async () => {
    const stores = createMemoryStores();
    gateway = await startClientGateway({ stores, release: () => stores.close() }, { scriptedAnthropic: true });
    gateway.proxy.server.on('request', (req: IncomingMessage) =>
      sessions.push(req.headers['x-claude-code-session-id']),
    );
    home = mkdtempSync(path.join(tmpdir(), 'tollgate-claude-home-'));
  });

  afterAll(async () => {
    await gateway.close();
    rmSync(home, { recursive: true, force: true });
  });

  it('claude -p at its default model: answered, each call it made metered, priced and in its session', async () => {
    // Its system prompt is marked for caching: the script reads and writes the prompt cache as Anthropic would.
    const usage = { input: 1234, cacheRead: 20_480, cacheWrite: 3_072, output: 56 };
    /** Anthropic's answer in the model the call asked for, whichever Claude Code chose. */
    const answer: Answer = (request, res) =>
      anthropicAnswer((request.body as { model: string }).model, usage)(request, res);
    gateway.scripted.answer = answer;
    const sentBefore = gateway.scripted.requests.length;
    if (!claudeCode)
      throw new Error('Claude Code could not be installed from npm: set CLAUDE_BIN to a claude executable');
    const run = await claudePrint(claudeCode, {
      baseUrl: gateway.url,
      apiKey: gateway.keys.answered,
      prompt: 'Say hello.',
      home,
      cwd: home,
    });
    expect(run).toMatchObject({ code: 0, stderr: '' });
    expect(run.stdout).toContain('Hello there');

    const sent = gateway.scripted.requests.slice(sentBefore);
    expect(sent.length).toBeGreaterThan(0);
    const models = sent.map((request) => (request.body as { model: string }).model);
    const records = await gateway.newRecords('answered', sent.length);
    expect(records).toHaveLength(sent.length);
    // One session for the run, sent on every request and kept on every record.
    const [session] = sessions;
    expect(session).toMatch(/^[0-9a-f-]{36}$/);
    expect(sessions.every((sentSession) => sentSession === session)).toBe(true);
    for (const record of records)
      expect(record).toMatchObject({
        route: '/v1/messages',
        provider: 'anthropic',
        status: 200,
        session,
        inputTokens: usage.input + usage.cacheRead + usage.cacheWrite,
        cachedInputTokens: usage.cacheRead,
        cacheWriteTokens: usage.cacheWrite,
        outputTokens: usage.output,
        usageSource: 'provider',
      });
    expect(records.map((record) => record.model).sort()).toEqual([...models].sort());
    // claude-opus-5-5, 2.1.332's default, at $4/M input, $0.20/M cache reads, $5/M cache writes and $20/M output:
    // 25,512,000 nano-USD a call.
    const billed = records.reduce((sum, record) => sum + record.costNanoUsd, 0);
    expect(billed).toBe(models.reduce((sum, model) => sum + catalogueCost(model, usage), 0));
  }, 150_000);
});
