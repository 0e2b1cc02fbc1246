// @tollgate/providers: one adapter per provider API, the request's call declaration, estimates, usage readers.
export { adapterFor, isProviderApi, providerApis } from './adapters.js';
export type { ProviderAdapter } from './adapter.js';
export { providerCall, declareProviderCall, declareOrAnswer } from './declare-call.js';
export type { CallDeclaration } from './declare-call.js';
export { openAiChat, chatCompletionsAdapter } from './openai-chat/index.js';
export { openAiResponses } from './openai-responses/index.js';
export { anthropicMessages } from './anthropic-messages/index.js';
export { openAiCompatible } from './openai-compatible/index.js';
export { gemini } from './gemini/index.js';
export {
  estimateRequest,
  estimateRequestAsync,
  estimateRequestAtOnce,
  estimateInputTokens,
  estimateInputTokensAsync,
  modelMaxOutputTokens,
} from './estimate.js';
export type { EstimateRequestInput } from './estimate.js';
export type { RequestEstimate } from './counter.js';
export { countTextTokens, preloadTokenizers, tokenizersLoaded, encodingLoaded, lastPieceStart } from './tokenizer.js';
export type { EncodingName } from './tokenizer.js';
export { TokenCountCache, DEFAULT_COUNT_CACHE_CHARS } from './count-cache.js';
export { OutputText } from './usage.js';
export type { UsageReader, OutputCounter } from './usage.js';
export { lowerOutputTokens, upperOutputTokens, maxTokenBytesOf } from './output-bounds.js';
/** Long work on the event loop in slices (the abuse watch's too). */
export { TimeSlice } from './tokenizer.js';
