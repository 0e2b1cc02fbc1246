// The proxy's forwarding of answers as they flow: a client that leaves stops the upstream read, a slow one holds it back, bodies pass whole.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { once } from 'node:events';
import { createServer, request } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { closeServer, newApiKey, sha256Hex, startProxy, waitFor } from './helpers/proxy.js';
import type { RunningProxy } from './helpers/proxy.js';

const clientKey = newApiKey();
/** A stream far bigger than every buffer between the upstream and the client (socket buffers included). */
const HUGE_STREAM_BYTES = 256 * 1024 * 1024;
const CONTENT = 'x'.repeat(16 * 1024);

/** What the scripted upstream did with its last answer. */
interface UpstreamSide {
  written: number;
  finished: boolean;
  closedEarly: boolean;
}

let server: Server;
let proxy: RunningProxy;
let script: (res: ServerResponse, side: UpstreamSide) => void;
let side: UpstreamSide;

function sseChunk(content: string): string {
  return `data: ${JSON.stringify({ id: 'chatcmpl-flow', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { content }, finish_reason: null }] })}\n\n`;
}

/** Streams SSE chunks for as long as the proxy takes them, up to HUGE_STREAM_BYTES, honouring backpressure. */
function endlessStream(res: ServerResponse, state: UpstreamSide): void {
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  const chunk = sseChunk(CONTENT);
  const pump = () => {
    while (!res.destroyed && state.written < HUGE_STREAM_BYTES) {
      state.written += chunk.length;
      if (!res.write(chunk)) {
        res.once('drain', pump);
        return;
      }
    }
    if (!res.destroyed) {
      state.finished = true;
      res.end();
    }
  };
  pump();
}

/** One request through the proxy with node:http, so the test decides when (and whether) to read. */
function openChat(body: Record<string, unknown>): Promise<IncomingMessage> {
  const payload = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], ...body });
  return new Promise((resolve, reject) => {
    const outgoing = request(
      `${proxy.url}/v1/chat/completions`,
      { method: 'POST', headers: { authorization: `Bearer ${clientKey}`, 'content-type': 'application/json' } },
      resolve,
    );
    outgoing.once('error', reject);
    outgoing.end(payload);
  });
}

async function readAll(response: IncomingMessage): Promise<string> {
  let text = '';
  for await (const chunk of response) text += String(chunk);
  return text;
}

beforeAll(async () => {
  server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const state: UpstreamSide = { written: 0, finished: false, closedEarly: false };
    side = state;
    res.once('close', () => {
      if (!res.writableFinished) state.closedEarly = true;
    });
    req.resume();
    req.once('end', () => script(res, state));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const upstreamUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  proxy = await startProxy({
    upstreams: { openai: { baseUrl: `${upstreamUrl}/v1`, apiKey: 'sk-upstream-flow', idleTimeoutMs: 5000 } },
    keys: [{ id: 'flow-key', sha256: sha256Hex(clientKey), scopes: ['chat'] }],
  });
});

afterAll(async () => {
  await proxy.close();
  await closeServer(server);
});

describe('a client that leaves', () => {
  it('mid-stream: the proxy stops reading the upstream and closes its call', async () => {
    script = endlessStream;
    const response = await openChat({ stream: true });
    expect(response.statusCode).toBe(200);
    await once(response, 'data');
    response.destroy();
    const upstream = side;
    await waitFor(() => (upstream.closedEarly ? true : undefined), 'the upstream call to be closed');
    expect(upstream.finished).toBe(false);
  });
});

describe('a client that does not read', () => {
  it('holds the upstream back instead of buffering its answer', async () => {
    script = endlessStream;
    const response = await openChat({ stream: true });
    response.pause();
    const upstream = side;
    // Let every buffer on the way fill up, until the upstream is held back.
    let last = -1;
    await waitFor(async () => {
      await new Promise((resolve) => setTimeout(resolve, 100));
      const steady = upstream.written === last;
      last = upstream.written;
      return steady ? true : undefined;
    }, 'the upstream to be held back');
    expect(upstream.finished).toBe(false);
    expect(upstream.written).toBeLessThan(HUGE_STREAM_BYTES / 4);
    response.destroy();
    await waitFor(() => (upstream.closedEarly ? true : undefined), 'the upstream call to be closed');
  });
});

describe('a stream whose first event is slow', () => {
  it('gets its headers to the client at once, before the first event', async () => {
    let sendFirstEvent = () => undefined as void;
    script = (res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.flushHeaders();
      sendFirstEvent = () => {
        res.write(sseChunk('late'));
        res.end('data: [DONE]\n\n');
      };
    };
    const started = Date.now();
    const response = await openChat({ stream: true });
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toBe('text/event-stream');
    expect(Date.now() - started).toBeLessThan(2000);
    sendFirstEvent();
    expect(await readAll(response)).toContain('late');
  });
});

/** The answer as the upstream wrote it, but for the call's cost (its header) last in its usage object. */
function withCost(answer: string, response: IncomingMessage): string {
  const cost = response.headers['x-tollgate-cost-usd'];
  expect(cost).toMatch(/^\d+\.\d+$/);
  return answer.replace(/}}$/, `,"cost_usd":${String(cost)}}}`);
}

describe('answers passed whole', () => {
  it('a JSON answer written in several pieces reaches the client unchanged', async () => {
    const completion = JSON.stringify({
      id: 'chatcmpl-flow',
      object: 'chat.completion',
      created: 1,
      model: 'gpt-4o-mini',
      choices: [{ index: 0, message: { role: 'assistant', content: 'word '.repeat(2000) }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 9, completion_tokens: 2000, total_tokens: 2009 },
    });
    const pieces = [completion.slice(0, 10), completion.slice(10, 5000), completion.slice(5000)];
    script = (res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const writeNext = () => {
        const piece = pieces.shift();
        if (piece === undefined) res.end();
        else {
          res.write(piece);
          setTimeout(writeNext, 5);
        }
      };
      writeNext();
    };
    const response = await openChat({});
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toBe('application/json');
    expect(await readAll(response)).toBe(withCost(completion, response));
  });

  it('a JSON answer in one piece reaches the client unchanged', async () => {
    const completion = JSON.stringify({
      id: 'chatcmpl-flow',
      object: 'chat.completion',
      created: 1,
      model: 'gpt-4o-mini',
      choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 9, completion_tokens: 1, total_tokens: 10 },
    });
    script = (res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(completion);
    };
    const response = await openChat({});
    expect(response.statusCode).toBe(200);
    expect(await readAll(response)).toBe(withCost(completion, response));
  });

  it('an upstream that dies in the middle of a JSON answer ends the client response', async () => {
    script = (res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' });
      res.write('{"id":"chatcmpl-flow",');
      setTimeout(() => res.destroy(), 20);
    };
    const response = await openChat({});
    // Either a clean 502 (nothing was sent yet) or a cut 200: never a response left hanging.
    const ended = await readAll(response).then(
      () => 'ended',
      () => 'cut',
    );
    expect(['ended', 'cut']).toContain(ended);
    if (response.statusCode === 200) expect(ended).toBe('cut');
    else expect(response.statusCode).toBe(502);
  });
});
