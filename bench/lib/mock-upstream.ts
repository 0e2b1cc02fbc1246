// A zero-latency OpenAI chat upstream for the proxy benchmark: JSON at once, or SSE chunks one event-loop turn apart.
import type { Request, Response } from 'express';
import { baseApp, type BuiltApp } from './app-base.js';
import { CHAT_COMPLETION, CHAT_PATH } from './fixtures.js';

/** Content chunks per streamed answer (plus the usage chunk and [DONE]). */
export const STREAM_CONTENT_CHUNKS = 20;

function chunk(body: Record<string, unknown>): string {
  return `data: ${JSON.stringify({ id: 'chatcmpl-bench', object: 'chat.completion.chunk', created: 1_700_000_000, model: 'gpt-4o-mini', ...body })}\n\n`;
}

// One o200k token a chunk ("word", then " word"), as the usage says: a stream within its cap is never cut.
const CONTENT_CHUNKS = Array.from({ length: STREAM_CONTENT_CHUNKS }, (_, index) =>
  chunk({
    choices: [
      {
        index: 0,
        delta: index === 0 ? { role: 'assistant', content: 'word' } : { content: ' word' },
        finish_reason: null,
      },
    ],
  }),
);
const FINISH_CHUNK = chunk({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] });

function usageChunk(completionTokens: number): string {
  return chunk({
    choices: [],
    usage: { prompt_tokens: 24, completion_tokens: completionTokens, total_tokens: 24 + completionTokens },
  });
}

/**
 * A streamed answer's events for a cap of `words` (one token each), made once per cap: the answer stops at the
 * request's `max_tokens` as a provider's does, so a call within its grant is never cut.
 */
const ANSWERS = new Map<string, readonly string[]>();
function answerEvents(words: number, usage: boolean): readonly string[] {
  const key = `${words}:${usage}`;
  let events = ANSWERS.get(key);
  if (!events) {
    events = [
      ...CONTENT_CHUNKS.slice(0, words),
      FINISH_CHUNK,
      ...(usage ? [usageChunk(words)] : []),
      'data: [DONE]\n\n',
    ];
    ANSWERS.set(key, events);
  }
  return events;
}

function streamAnswer(req: Request, res: Response): void {
  const body = req.body as {
    stream_options?: { include_usage?: boolean };
    max_tokens?: unknown;
    max_completion_tokens?: unknown;
  };
  const asked = body.max_completion_tokens ?? body.max_tokens;
  const cap = typeof asked === 'number' && asked > 0 ? asked : STREAM_CONTENT_CHUNKS;
  const events = answerEvents(Math.min(STREAM_CONTENT_CHUNKS, cap), body.stream_options?.include_usage === true);
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
