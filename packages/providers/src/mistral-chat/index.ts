// Mistral's own chat API (`POST https://api.mistral.ai/v1/chat/completions`): a Chat Completions dialect, end to end.
import type { ProviderAdapter } from '../adapter.js';
import type { RequestCounter } from '../counter.js';
import { asArray, isObject, parseJson } from '../json.js';
import type { Json } from '../json.js';
import { chatCompletionsAdapter, countChatRequest } from '../openai-chat/index.js';
import { bearerKey, oneChatToken } from '../openai-chat/upstreams.js';

/**
 * Every top-level field Mistral's chat API reads. It refuses any other with 422, so a request
 * translated to it keeps only these, and nothing is added to it (no `stream_options`: its streams
 * carry their usage in their last chunk unasked).
 */
const MISTRAL_FIELDS: readonly string[] = [
  'model',
  'messages',
  'max_tokens',
  'stream',
  'n',
  'temperature',
  'top_p',
  'random_seed',
  'safe_prompt',
  'stop',
  'tools',
  'tool_choice',
  'response_format',
  'presence_penalty',
  'frequency_penalty',
  'parallel_tool_calls',
  'prediction',
];

/** Chat fields with no Mistral equivalent that change nothing in the answer: left out, not refused. */
const DROPPED_CHAT_FIELDS: ReadonlySet<string> = new Set([
  'stream_options',
  'user',
  'store',
  'metadata',
  'service_tier',
]);

/** Documents by URL (`document_url` parts) are read by the provider: their pages are input the body does not hold. */
function countMistralRequest(counter: RequestCounter, body: Json): number {
  for (const message of asArray(body.messages)) {
    if (!isObject(message)) continue;
    for (const part of asArray(message.content))
      if (isObject(part) && part.type === 'document_url') counter.pullsContent();
  }
  return countChatRequest(counter, body);
}

/** A 422's `message` is an object whose `detail` lists what failed (`[{ loc, msg, type }]`). */
function mistralErrorMessage(body: unknown): string | undefined {
  const parsed = typeof body === 'string' ? parseJson(body) : body;
  if (!isObject(parsed)) return undefined;
  const message = parsed.message ?? (isObject(parsed.error) ? parsed.error.message : undefined);
  if (typeof message === 'string') return message;
  if (!isObject(message)) return undefined;
  const details = asArray(message.detail)
    .map((detail) => {
      if (!isObject(detail)) return '';
      const where = asArray(detail.loc).join('.');
      return typeof detail.msg === 'string' ? (where ? `${where}: ${detail.msg}` : detail.msg) : '';
    })
    .filter((text) => text.length > 0);
  return details.length > 0 ? details.join('; ') : JSON.stringify(message).slice(0, 1000);
}

const chat = chatCompletionsAdapter({
  api: 'mistral.chat',
  provider: 'mistral',
  // Mistral reads `max_tokens` only (`max_completion_tokens` is an unknown field to it: 422).
  capFields: ['max_tokens'],
  genAiProvider: 'mistral_ai',
  label: 'Mistral',
  streamUsage: 'always',
  // Where the official SDK calls with `serverURL: "http://gateway/mistral"`.
  route: { path: '/mistral/v1/chat/completions' },
});

/**
 * Mistral's chat API. Its wire format is Chat Completions' (answers, chunks, `data: [DONE]`, usage
 * `prompt_tokens` / `completion_tokens`) with its own request fields: `max_tokens` is the cap,
 * `random_seed` the seed, `safe_prompt` its own; unknown fields are refused (422). Its streams
 * always end with the usage on their last chunk, so none is asked for. Its tokenizer has no exact
 * JavaScript port: catalogue rows name none, inputs are approximated and a stream is cut only on a
 * count that cannot over-state it. Errors: `{ object: "error", message, type, param, code }`.
 */
export const mistralChat: ProviderAdapter = {
  ...chat,
  countInput: countMistralRequest,
  requestFields: MISTRAL_FIELDS,
  upstream: {
    kind: 'mistral',
    baseUrl: 'https://api.mistral.ai/v1',
    keyEnv: 'MISTRAL_API_KEY',
    path: '/chat/completions',
    modelsPath: '/models',
    oneTokenCall: oneChatToken,
    authHeaders: bearerKey,
  },
  errorBody: ({ message, type, code, param }) => ({ object: 'error', message, type, param, code }),
  errorMessage: mistralErrorMessage,
  toChat(body) {
    // `safe_prompt` prepends Mistral's own guardrail prompt: no other chat API can do that for it.
    if (body.safe_prompt === true) return { refused: 'the Mistral field "safe_prompt" has no chat equivalent' };
    delete body.safe_prompt;
    if (body.random_seed !== undefined) {
      body.seed ??= body.random_seed;
      delete body.random_seed;
    }
    return body;
  },
  fromChat(body) {
    if (body.seed !== undefined) {
      body.random_seed ??= body.seed;
      delete body.seed;
    }
    if (body.max_completion_tokens !== undefined) {
      body.max_tokens ??= body.max_completion_tokens;
      delete body.max_completion_tokens;
    }
    for (const field of Object.keys(body)) {
      if (MISTRAL_FIELDS.includes(field)) continue;
      if (!DROPPED_CHAT_FIELDS.has(field)) return { refused: `the chat field "${field}" has no Mistral equivalent` };
      delete body[field];
    }
    return body;
  },
};
