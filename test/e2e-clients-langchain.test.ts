// LangChain JS pointed at the gateway as its users point it: ChatOpenAI (Chat Completions and the Responses API) and
// ChatAnthropic answered, metered from the upstream's usage, refused through the errors LangChain throws.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { ChatAnthropic } from '@langchain/anthropic';
import type { AIMessageChunk } from '@langchain/core/messages';
import { ChatOpenAI } from '@langchain/openai';
import { caught } from './helpers/proxy.js';
import { clientStoreKinds, startClientGateway } from './helpers/client-gateway.js';
import type { ClientGateway } from './helpers/client-gateway.js';

describe.each(clientStoreKinds('langchain'))('LangChain JS through the gateway on %s stores', (_kind, storesFor) => {
  let gateway: ClientGateway;
  /** The chat models as their users configure them (the gateway's base URL and a tollgate key), without retries. */
  const chats = (key: string) => {
    const openai = {
      model: 'gpt-4o-mini',
      apiKey: key,
      maxRetries: 0,
      configuration: { baseURL: `${gateway.url}/v1` },
    };
    return {
      chat: new ChatOpenAI(openai),
      responses: new ChatOpenAI({ ...openai, useResponsesApi: true }),
      anthropic: new ChatAnthropic({
        model: 'claude-haiku-4-5',
        apiKey: key,
        maxRetries: 0,
        anthropicApiUrl: gateway.url,
      }),
    };
  };

  beforeAll(async () => {
    gateway = await startClientGateway(storesFor());
  });

  afterAll(async () => {
    await gateway.close();
  });

  it('invoke on Chat Completions, Responses and Anthropic: answered, each metered from usage_metadata', async () => {
    const routes = { chat: '/v1/chat/completions', responses: '/v1/responses', anthropic: '/v1/messages' };
    for (const [name, model] of Object.entries(chats(gateway.keys.answered))) {
      const message = await model.invoke('Hello there');
      expect(message.text).toMatch(/^This is the gateway mock provider/);
      expect(message.usage_metadata?.input_tokens).toBeGreaterThan(0);
      const [record] = await gateway.newRecords('answered');
      expect(record).toMatchObject({
        route: routes[name as keyof typeof routes],
        inputTokens: message.usage_metadata?.input_tokens,
        outputTokens: message.usage_metadata?.output_tokens,
        usageSource: 'provider',
        stream: false,
        status: 200,
      });
    }
  });

  it('stream on Chat Completions, Responses and Anthropic: chunks, and the record of the usage they carried', async () => {
    for (const model of Object.values(chats(gateway.keys.answered))) {
      let whole: AIMessageChunk | undefined;
      for await (const chunk of await model.stream('Stream please')) whole = whole ? whole.concat(chunk) : chunk;
      expect(whole!.text.split(' ')).toHaveLength(24);
      const [record] = await gateway.newRecords('answered');
      // The upstream's 24 output tokens (LangChain adds Anthropic's cumulative counts: it reports 25 there).
      expect(record).toMatchObject({
        inputTokens: whole!.usage_metadata?.input_tokens,
        outputTokens: 24,
        usageSource: 'provider',
        stream: true,
      });
    }
  });

  it('refused by a budget and by a request limit: the error LangChain throws carries status 429 and the code', async () => {
    const broke = chats(gateway.keys.broke);
    for (const model of [broke.chat, broke.responses]) {
      const budget = await caught(model.invoke('Hi'));
      expect(budget).toMatchObject({ status: 429, code: 'insufficient_quota', lc_error_code: 'MODEL_RATE_LIMIT' });
    }
    const anthropicBudget = await caught(broke.anthropic.invoke('Hi'));
    expect(anthropicBudget).toMatchObject({ status: 429, error: { error: { code: 'insufficient_quota' } } });

    const limited = chats(gateway.keys.limited);
    await limited.anthropic.invoke('Hi');
    const refused = await caught(limited.chat.invoke('Hi'));
    expect(refused).toMatchObject({ status: 429, code: 'rate_limit_exceeded', lc_error_code: 'MODEL_RATE_LIMIT' });
  });
});
