// examples/proxy/examples/clients.ts: the official OpenAI and Anthropic SDKs, and Gemini's native API, through the proxy with a tollgate key.
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { generateApiKey, hashApiKey } from '@tollgate/auth';
import { createGatewayApp, validateConfig } from '@tollgate/gateway';

// The proxy on an ephemeral port, its built-in mock provider as the upstream, named on purpose.
const key = generateApiKey();
const config = validateConfig({
  upstreams: { mock: { kind: 'mock' } },
  tiers: {
    free: {
      requestsPerMinute: 60,
      models: ['gpt-4o-mini', 'claude-haiku-4-5', 'gemini-2.5-flash'],
      maxOutputTokens: 64,
    },
  },
  tenants: { acme: { tier: 'free' } },
  keys: [{ id: 'try-me', sha256: hashApiKey(key), tenant: 'acme' }],
  log: { level: 'silent' },
});
const app = createGatewayApp(config, { log: () => undefined });
const server = app.listen(0, '127.0.0.1');
await new Promise((resolve) => server.once('listening', resolve));
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
process.env.TOLLGATE_KEY = key;

const openai = new OpenAI({ apiKey: process.env.TOLLGATE_KEY, baseURL: `${base}/v1` });
const anthropic = new Anthropic({ apiKey: process.env.TOLLGATE_KEY, baseURL: base });

const chat = await openai.chat.completions.create({
  model: 'gpt-4o-mini',
  max_tokens: 16,
  messages: [{ role: 'user', content: 'hello' }],
});
console.log(`openai: ${chat.choices[0]!.finish_reason}, ${chat.usage?.completion_tokens} output tokens`);
const message = await anthropic.messages.create({
  model: 'claude-haiku-4-5',
  max_tokens: 16,
  messages: [{ role: 'user', content: 'hello' }],
});
console.log(`anthropic: ${message.stop_reason}, ${message.usage.output_tokens} output tokens`);
// Google Gen AI SDK (@google/genai), new GoogleGenAI({ apiKey, httpOptions: { baseUrl: base } }), sends this request
// at /v1/models/... (its default version; with apiVersion: 'v1beta' at /v1beta/..., served alike): the key as
// x-goog-api-key, streams with ?alt=sse.
const gemini = await fetch(`${base}/v1beta/models/gemini-2.5-flash:generateContent`, {
  method: 'POST',
  headers: { 'x-goog-api-key': process.env.TOLLGATE_KEY, 'content-type': 'application/json' },
  body: JSON.stringify({
    contents: [{ role: 'user', parts: [{ text: 'hello' }] }],
    generationConfig: { maxOutputTokens: 16 },
  }),
});
const answer = (await gemini.json()) as {
  candidates: { finishReason: string }[];
  usageMetadata: { candidatesTokenCount: number };
};
console.log(
  `gemini: ${answer.candidates[0]!.finishReason}, ${answer.usageMetadata.candidatesTokenCount} output tokens`,
);

// A key it does not know: 401 in the client's error shape.
const stranger = new OpenAI({ apiKey: generateApiKey(), baseURL: `${base}/v1` });
await stranger.chat.completions
  .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] })
  .catch((error: unknown) => console.log(`unknown key: ${(error as InstanceType<typeof OpenAI.APIError>).status}`));

server.closeAllConnections();
server.close();
await app.close();
