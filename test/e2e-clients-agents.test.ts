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
