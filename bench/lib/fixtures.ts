// The request every chain benchmark sends, the answer its handler gives, and the bench key.
import { createHash } from 'node:crypto';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/**
 * A small chat request with a model and an output cap, as a client would send it: the same system prompt every
 * time, and a user message numbered `n`, so that a run can send each request a message never sent before.
 */
export function chatBody(n: number): string {
  return JSON.stringify({
    model: 'gpt-4o-mini',
    messages: [
      { role: 'system', content: 'You are a terse assistant.' },
      { role: 'user', content: `Say hello in one short sentence. Request ${n}.` },
    ],
    max_tokens: 64,
  });
}

/** The request of benches that send one body over and over (the meter's count cache is off in them: see tollgate-apps.ts). */
export const CHAT_BODY = chatBody(0);

export const STREAM_CHAT_BODY = JSON.stringify({ ...JSON.parse(CHAT_BODY), stream: true });

export const CHAT_PATH = '/v1/chat/completions';

/** The handler's immediate answer: an OpenAI chat completion with usage, so metering has something to read. */
export const CHAT_COMPLETION = JSON.stringify({
  id: 'chatcmpl-bench',
  object: 'chat.completion',
  created: 1_700_000_000,
  model: 'gpt-4o-mini',
  choices: [{ index: 0, message: { role: 'assistant', content: 'Hello there!' }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 24, completion_tokens: 4, total_tokens: 28 },
});

/** A well-formed tollgate key (tgk_ + 40 base62); deterministic so every side sends the same bytes. */
export function benchKey(index = 0): string {
  const base = `tgk_Bench${String(index).padStart(8, '0')}`;
  return (base + 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP0123456789').slice(0, 44);
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

export function authHeaders(key = benchKey()): Record<string, string> {
  return { 'content-type': 'application/json', authorization: `Bearer ${key}` };
}

/** The config entry of the bench key `index` (`bench-key-<index>`): a key of the pro tenant `bench-tenant`, its user and feature set. */
export function benchKeyEntry(index = 0) {
  return {
    id: `bench-key-${index}`,
    sha256: sha256Hex(benchKey(index)),
    tenant: 'bench-tenant',
    user: 'bench-user',
    feature: 'bench',
    scopes: ['chat'],
  };
}
