// @tollgate/providers/kit: everything the package has, for tollgate's own packages and for whoever builds on it.
// An app needs only `@tollgate/providers`; what is here beyond it may change between minor versions.
export type {
  AdapterRoute,
  ClientHeaders,
  ErrorDescription,
  ProviderAdapter,
  RequestProblem,
  RouteMethods,
  TokenCounting,
  UpstreamCall,
  UpstreamSettings,
  UpstreamWire,
  WireFamily,
} from './adapter.js';
export { adapterFor, providerAdapters } from './adapters.js';
export { kindsSpeaking, upstreamKinds } from './upstream-kinds.js';
export type { UpstreamKind } from './upstream-kinds.js';
export { openAiChat, chatCompletionsAdapter } from './openai-chat/index.js';
export type { ChatAdapterOptions } from './openai-chat/index.js';
export { openAiResponses } from './openai-responses/index.js';
export { anthropicMessages } from './anthropic-messages/index.js';
export { openAiCompatible } from './openai-compatible/index.js';
export {
  gemini,
  GEMINI_ACTIONS,
  GEMINI_COUNT_ACTION,
  GEMINI_STREAM_ACTION,
  splitGeminiTarget,
} from './gemini/index.js';
export { answerFormsOf, parseAnswer } from './answer-forms.js';
export type { AnswerForms, SseMessage } from './answer-forms.js';
export { checkMessages, checkPositiveInteger } from './request-checks.js';
export { declareOrAnswer, declareProviderCall, providerCall } from './declare-call.js';
export type { CallDeclaration } from './declare-call.js';
export { RequestCounter, imageTokenBound, ASYNC_ESTIMATE_MS, ESTIMATE_SLICE_MS, SYNC_ESTIMATE_MS } from './counter.js';
export type { EstimateMethod, EstimateOptions, InputTokenEstimate, RequestEstimate } from './counter.js';
export {
  checkModelKind,
  estimateInputTokens,
  estimateInputTokensAsync,
  estimateRequest,
  estimateRequestAsync,
  estimateRequestAtOnce,
  FALLBACK_MAX_OUTPUT_TOKENS,
  modelMaxOutputTokens,
  tokenizerFor,
} from './estimate.js';
export type { EstimateRequestInput } from './estimate.js';
export { DEFAULT_COUNT_CACHE_CHARS, TokenCountCache } from './count-cache.js';
export {
  CountBudget,
  countTextTokens,
  countTextTokensSliced,
  encodingLoaded,
  loadEncoding,
  MAX_TOKEN_BYTES,
  preloadTokenizers,
  TimeSlice,
  tokenizersLoaded,
  utf8Length,
} from './tokenizer.js';
export type { CountBound, EncodingName } from './tokenizer.js';
export { mapEach, mapField, mapString, withField } from './prompt-text.js';
export type { TextMap } from './prompt-text.js';
export { SseDecoder } from './sse-decoder.js';
export type { SseBlock } from './sse-decoder.js';
export { OutputText, sseEvent, withCostUsd } from './usage.js';
export { lowerOutputTokens, maxTokenBytesOf, MAX_KNOWN_TOKEN_BYTES, upperOutputTokens } from './output-bounds.js';
export type { OutputCounter, ReadUsage, StreamEndingUsage, UsageReader } from './usage.js';
