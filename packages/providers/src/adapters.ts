// The adapters by API name: what a route's declared `api` resolves to.
import { TollgateError } from '@tollgate/core';
import type { ProviderApi } from '@tollgate/core';
import type { ProviderAdapter } from './adapter.js';
import { anthropicMessages } from './anthropic-messages/index.js';
import { gemini } from './gemini/index.js';
import { mistralChat } from './mistral-chat/index.js';
import { openAiChat } from './openai-chat/index.js';
import { openAiCompatible } from './openai-compatible/index.js';
import { openAiEmbeddings } from './openai-embeddings/index.js';
import { openAiImages } from './openai-images/index.js';
import { openAiResponses } from './openai-responses/index.js';
import { openAiSpeech } from './openai-speech/index.js';
import { openAiTranscriptions } from './openai-transcriptions/index.js';

const ADAPTERS: Readonly<Record<ProviderApi, ProviderAdapter>> = Object.freeze({
  'openai.chat': openAiChat,
  'openai.responses': openAiResponses,
  'anthropic.messages': anthropicMessages,
  'openai.compatible': openAiCompatible,
  'gemini.generate': gemini,
  'mistral.chat': mistralChat,
  'openai.embeddings': openAiEmbeddings,
  'openai.speech': openAiSpeech,
  'openai.images': openAiImages,
  'openai.transcriptions': openAiTranscriptions,
});

/** Every adapter: what a gateway serves, configures and mocks is read from them. */
export function providerAdapters(): readonly ProviderAdapter[] {
  return Object.values(ADAPTERS);
}

/** Every provider API, the registry's: one adapter each. */
export function providerApis(): readonly ProviderApi[] {
  return Object.keys(ADAPTERS) as ProviderApi[];
}

/** Whether `value` names an API the registry has an adapter for. */
export function isProviderApi(value: unknown): value is ProviderApi {
  return typeof value === 'string' && Object.hasOwn(ADAPTERS, value);
}

/** The adapter of an API, or of an adapter given as is; anything else is a configuration error. */
export function adapterFor(api: ProviderApi | ProviderAdapter, where = 'api'): ProviderAdapter {
  if (
    typeof api === 'object' &&
    api !== null &&
    typeof api.read === 'function' &&
    typeof api.createReader === 'function'
  )
    return api;
  if (!isProviderApi(api)) {
    throw new TollgateError(
      'ERR_TG_PROVIDERS_UNKNOWN_API',
      `${where} must be one of ${Object.keys(ADAPTERS).join(', ')} (or an adapter); got ${JSON.stringify(api)}`,
    );
  }
  return ADAPTERS[api];
}
