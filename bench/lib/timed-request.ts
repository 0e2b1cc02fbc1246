// One request at a time with the arrival time of its headers and of every body chunk (for TTFB and per-chunk figures).
import { Agent, request } from 'undici';

interface TimedResponse {
  status: number;
  /** ms from sending to the response headers. */
  headersMs: number;
  /** ms from sending to the first body byte. */
  firstByteMs: number;
  /** ms from sending to the end of the body. */
  totalMs: number;
  /** Arrival of each body chunk, ms from sending. */
  chunkMs: number[];
  body: string;
}

let agent: Agent | undefined;

export async function timedRequest(url: string, body: string, headers: Record<string, string>): Promise<TimedResponse> {
  const started = performance.now();
  agent ??= new Agent({ keepAliveTimeout: 60_000, connections: 4 });
  const response = await request(url, { method: 'POST', body, headers, dispatcher: agent });
  const headersMs = performance.now() - started;
  const chunkMs: number[] = [];
  const parts: Buffer[] = [];
  for await (const chunk of response.body) {
    chunkMs.push(performance.now() - started);
    parts.push(chunk as Buffer);
  }
  const totalMs = performance.now() - started;
  return {
    status: response.statusCode,
    headersMs,
    firstByteMs: chunkMs[0] ?? totalMs,
    totalMs,
    chunkMs,
    body: Buffer.concat(parts).toString('utf8'),
  };
}

export async function closeTimedRequests(): Promise<void> {
  const closing = agent;
  agent = undefined;
  await closing?.close();
}
