// The OpenAI Agents SDK pointed at the gateway as its users point it: a tool loop over the Responses API, each turn
// metered from the upstream's usage, and refusals surfacing as the OpenAI errors the SDK's runner rethrows.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Agent, OpenAIProvider, Runner, setTracingDisabled, tool } from '@openai/agents';
import OpenAI from 'openai';
import { z } from 'zod';
import { caught } from './helpers/proxy.js';
import { clientStoreKinds, SCRIPTED_MODEL, startClientGateway } from './helpers/client-gateway.js';
import type { ClientGateway } from './helpers/client-gateway.js';
import { inTurn, responsesAnswer } from './helpers/routing-upstreams.js';
import { mkdtempSync, rmSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createMemoryStores } from '@tollgate/core';
import { codexExec, findCodex } from './helpers/codex.js';

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
