// examples/proxy/examples/mock-provider.ts: the built-in mock provider as a test upstream: usage it can predict, and failures on demand.
import type { AddressInfo } from 'node:net';
import { createMockProvider } from '@tollgate/providers/mock';

const mock = createMockProvider({ chunkDelayMs: 10 });
const server = mock.app.listen(0, '127.0.0.1'); // then "baseUrl": "http://127.0.0.1:<port>/v1" (Gemini: .../v1beta)
await new Promise((resolve) => server.once('listening', resolve));
const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
const chat = (signal?: AbortSignal) =>
  fetch(`${baseUrl}/chat/completions`, {
    method: 'POST',
    headers: { authorization: 'Bearer sk-anything', 'content-type': 'application/json' },
    signal,
    body: JSON.stringify({
      model: 'gpt-4o-mini',
      max_tokens: 10,
      messages: [{ role: 'user', content: 'Say hello to the world' }],
    }),
  });

const answer = await chat();
const { usage } = (await answer.json()) as { usage: { prompt_tokens: number; completion_tokens: number } };
console.log(`answered: ${answer.status}, ${usage.prompt_tokens} input and ${usage.completion_tokens} output tokens`);

mock.behavior.failure = 'error500'; // the next requests fail
console.log(`failing: ${(await chat()).status}`);
mock.behavior.failure = 'hang'; // the next requests never get an answer
const hung = await chat(AbortSignal.timeout(300)).then(
  () => 'answered',
  (error: Error) => error.name,
);
console.log(`hanging: ${hung}`);

mock.close(); // ends what it holds open
server.closeAllConnections();
server.close();
