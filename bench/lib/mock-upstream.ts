// A zero-latency OpenAI chat upstream for the proxy benchmark: JSON at once, or SSE chunks one event-loop turn apart.
import type { Request, Response } from 'express';
import { baseApp, type BuiltApp } from './app-base.js';
import { CHAT_COMPLETION, CHAT_PATH } from './fixtures.js';

/** Content chunks per streamed answer (plus the usage chunk and [DONE]). */
export const STREAM_CONTENT_CHUNKS = 20;

function chunk(body: Record<string, unknown>): string {
  return `data: ${JSON.stringify({ id: 'chatcmpl-bench', object: 'chat.completion.chunk', created: 1_700_000_000, model: 'gpt-4o-mini', ...body })}\n\n`;
}

const CONTENT_CHUNKS = Array.from({ length: STREAM_CONTENT_CHUNKS }, (_, index) =>
  chunk({
    choices: [
      {
        index: 0,
        delta: index === 0 ? { role: 'assistant', content: 'word ' } : { content: 'word ' },
        finish_reason: null,
      },
    ],
  }),
);
const FINISH_CHUNK = chunk({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] });
const USAGE_CHUNK = chunk({
  choices: [],
  usage: { prompt_tokens: 24, completion_tokens: STREAM_CONTENT_CHUNKS, total_tokens: 24 + STREAM_CONTENT_CHUNKS },
});

function streamAnswer(req: Request, res: Response): void {
  const wantsUsage =
    (req.body as { stream_options?: { include_usage?: boolean } }).stream_options?.include_usage === true;
  const events = [...CONTENT_CHUNKS, FINISH_CHUNK, ...(wantsUsage ? [USAGE_CHUNK] : []), 'data: [DONE]\n\n'];
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  res.flushHeaders();
  let next = 0;
  // One event per turn of the loop: separate writes, so the proxy sees (and pays for) every chunk, with no timer delay.
  const writeNext = () => {
    if (res.destroyed) return;
    const event = events[next++];
    if (event === undefined) {
      res.end();
      return;
    }
    res.write(event);
    setImmediate(writeNext);
  };
  writeNext();
}

export async function buildBenchUpstream(): Promise<BuiltApp> {
  const app = baseApp();
  app.post(CHAT_PATH, function answerChat(req: Request, res: Response) {
    if ((req.body as { stream?: unknown }).stream === true) streamAnswer(req, res);
    else res.type('application/json').send(CHAT_COMPLETION);
  });
  return { app, close: async () => {} };
}
