// Gemini's paths: `models/{model}:{method}` at a gateway (its route) and at Google's API (its upstream).
import type { AdapterRoute, UpstreamWire } from '../adapter.js';

/** The streaming method's name in the path: `models/{model}:streamGenerateContent`. */
export const GEMINI_STREAM_ACTION = 'streamGenerateContent';
export const GEMINI_ACTIONS = ['generateContent', GEMINI_STREAM_ACTION] as const;
/** The method that counts a request's tokens without running it: `models/{model}:countTokens`. */
export const GEMINI_COUNT_ACTION = 'countTokens';
/** Every method a gateway serves on the path: generation (JSON and stream) and the token count. */
const GEMINI_METHODS: readonly string[] = [...GEMINI_ACTIONS, GEMINI_COUNT_ACTION];

/** `{model}:{action}`, or undefined when the path names none of `methods` (by default: any method a gateway serves). */
export function splitGeminiTarget(
  target: unknown,
  methods: readonly string[] = GEMINI_METHODS,
): { model: string; action: string } | undefined {
  if (typeof target !== 'string') return undefined;
  const colon = target.lastIndexOf(':');
  const action = target.slice(colon + 1);
  if (colon < 0 || !methods.includes(action)) return undefined;
  return { model: target.slice(0, colon), action };
}

/**
 * Express cannot match a literal `:` after a param: the model and the method share the last segment. A stream must
 * be asked as SSE (`?alt=sse`, as Google's SDKs do: the one stream format a meter reads). Google's SDKs send the key
 * in `x-goog-api-key`; `?key=` is not read: a key in a URL ends up in logs.
 */
export const GEMINI_ROUTE: AdapterRoute = {
  path: '/v1beta/models/:target',
  // Google serves both versions; @google/genai calls `/v1` unless told `apiVersion: 'v1beta'`.
  aliases: ['/v1/models/:target'],
  modelInPath: true,
  shown: '/v1beta/models/{model}:generateContent',
  methods: {
    calls: GEMINI_ACTIONS,
    read: (params) => splitGeminiTarget(params.target),
    checkQuery: (method, query) =>
      method === GEMINI_STREAM_ACTION && query.alt !== 'sse'
        ? { param: 'alt', message: `${GEMINI_STREAM_ACTION} is served as SSE only: add ?alt=sse.` }
        : undefined,
  },
  keyHeaders: ['x-goog-api-key'],
};

/**
 * Google's Gemini API (`api: "gemini"`, the kind of an upstream named `gemini` or `google`): the path names the call's
 * model (a downgrade may have changed it) and its method, streams asked as SSE; the key goes in `x-goog-api-key`.
 */
export const GEMINI_UPSTREAM: UpstreamWire = {
  kind: 'gemini',
  names: ['gemini', 'google'],
  baseUrl: 'https://generativelanguage.googleapis.com/v1beta',
  keyEnv: 'GEMINI_API_KEY',
  path: ({ model, stream }) =>
    stream
      ? `/models/${encodeURIComponent(model)}:${GEMINI_STREAM_ACTION}?alt=sse`
      : `/models/${encodeURIComponent(model)}:generateContent`,
  modelsPath: '/models',
  // The model is named in the call's path.
  oneTokenCall: () => ({ contents: [{ parts: [{ text: 'ping' }] }], generationConfig: { maxOutputTokens: 1 } }),
  authHeaders: (key) => ({ 'x-goog-api-key': key }),
};
