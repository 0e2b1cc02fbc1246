// The kinds of upstream that speak Chat Completions: OpenAI's own API and self-hosted servers (Azure's is azure.ts).
import type { UpstreamWire } from '../adapter.js';

/** OpenAI's keys and the keys of servers that copy its API: a bearer token. */
export function bearerKey(key: string): Readonly<Record<string, string>> {
  return { authorization: `Bearer ${key}` };
}

/** The paid probe of a Chat Completions server: one token (`max_tokens`, which every server of the API reads). */
export function oneChatToken(model: string): Readonly<Record<string, unknown>> {
  return { model, max_tokens: 1, messages: [{ role: 'user', content: 'ping' }] };
}

/**
 * OpenAI's own API (`api: "openai"`, the kind of an upstream that names none). Its base URL ends in `/v1`, as the
 * OpenAI SDK's `baseURL` does; each of its APIs says its path (`/chat/completions`, `/responses`, `/embeddings`).
 */
export const OPENAI_UPSTREAM: UpstreamWire = {
  kind: 'openai',
  baseUrl: 'https://api.openai.com/v1',
  keyEnv: 'OPENAI_API_KEY',
  path: '/chat/completions',
  modelsPath: '/models',
  oneTokenCall: oneChatToken,
  statusPage: 'https://status.openai.com/api/v2/status.json',
  authHeaders: bearerKey,
  modelTokenizer: 'o200k_base',
};

/** Self-hosted servers that speak Chat Completions (vLLM, Ollama, llama.cpp server): never a default by name. */
export const OPENAI_COMPATIBLE_UPSTREAM: UpstreamWire = {
  kind: 'openai-compatible',
  names: [],
  baseUrl: 'http://localhost:8000/v1',
  path: '/chat/completions',
  modelsPath: '/models',
  oneTokenCall: oneChatToken,
  authHeaders: bearerKey,
  modelTokenizer: 'o200k_base',
};
