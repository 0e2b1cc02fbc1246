// packages/router/examples/translate.ts: an OpenAI chat request sent to an Anthropic target, its answer and its error given back in the client's shape.
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { canTranslate, translateError, translateRequest, translateResponse } from '@tollgate/router';

// A fake Anthropic Messages API on an ephemeral port: answers a message, or 529 when asked for no tokens.
const anthropic = http.createServer((req, res) => {
  let raw = '';
  req.on('data', (chunk: Buffer) => (raw += chunk.toString()));
  req.on('end', () => {
    const body = JSON.parse(raw) as { model: string; max_tokens: number };
    res.setHeader('content-type', 'application/json');
    if (body.max_tokens === 1) {
      res
        .writeHead(529)
        .end(JSON.stringify({ type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } }));
      return;
    }
    res.end(
      JSON.stringify({
        id: 'msg_1',
        type: 'message',
        role: 'assistant',
        model: body.model,
        stop_reason: 'end_turn',
        stop_sequence: null,
        content: [{ type: 'text', text: 'Hello from Claude' }],
        usage: { input_tokens: 12, output_tokens: 4 },
      }),
    );
  });
});
anthropic.listen(0, '127.0.0.1');
await once(anthropic, 'listening');
const url = `http://127.0.0.1:${(anthropic.address() as AddressInfo).port}/v1/messages`;

console.log(`openai.chat -> anthropic.messages: ${canTranslate('openai.chat', 'anthropic.messages')}`);
for (const maxTokens of [64, 1]) {
  const body = {
    model: 'smart',
    max_tokens: maxTokens,
    messages: [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hi' },
    ],
  };
  const translated = translateRequest(body, 'openai.chat', 'anthropic.messages', 'claude-sonnet-4-5');
  if (!translated.ok) throw new Error(`target skipped: ${translated.reason}`); // the target cannot express the request
  const answer = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(translated.body),
  });
  const json: unknown = await answer.json();
  if (answer.ok) {
    // JSON answer in the client's shape, naming the model the client asked for.
    const chat = translateResponse(json, 'anthropic.messages', 'openai.chat', body.model) as {
      model: string;
      choices: { message: { content: string } }[];
      usage: { total_tokens: number };
    };
    console.log(`answer: ${chat.model} says "${chat.choices[0]!.message.content}" (${chat.usage.total_tokens} tokens)`);
  } else {
    // Error answer: the client's error shape, with the status the proxy gives the same failure.
    const { status, body: error } = translateError(answer.status, json, 'anthropic.messages', 'openai.chat');
    console.log(`error: ${status} ${JSON.stringify(error)}`);
  }
}
// A stream: const t = createStreamTranslator('anthropic.messages', 'openai.chat', body.model);
//   for each upstream chunk: res.write(t.push(chunk)); at the end: res.end(t.end()); exact usage: t.usage()
anthropic.close();
