// Azure OpenAI: an upstream variant of Chat Completions, reached by deployment, with its key header and API version.
import type { UpstreamSettings, UpstreamWire } from '../adapter.js';
import { oneChatToken } from './upstreams.js';

/** Azure OpenAI's generally available API version of Chat Completions, used when the upstream's entry names none. */
const DEFAULT_AZURE_API_VERSION = '2024-10-21';

function apiVersion(settings: UpstreamSettings): string {
  return encodeURIComponent(settings.apiVersion ?? DEFAULT_AZURE_API_VERSION);
}

/**
 * Azure OpenAI (`api: "azure-openai"`): the request is Chat Completions as it is, sent to the deployment serving the
 * model (the entry's `deployments`, else one named as the model), with the API version in the query and the key in
 * `api-key`. Never a default by name.
 */
export const AZURE_OPENAI_UPSTREAM: UpstreamWire = {
  kind: 'azure-openai',
  names: [],
  baseUrl: 'https://<resource>.openai.azure.com',
  keyEnv: 'AZURE_OPENAI_API_KEY',
  path: ({ model }, settings) => {
    const deployment = encodeURIComponent(settings.deployments?.[model] ?? model);
    return `/openai/deployments/${deployment}/chat/completions?api-version=${apiVersion(settings)}`;
  },
  modelsPath: (settings) => `/openai/models?api-version=${apiVersion(settings)}`,
  oneTokenCall: oneChatToken,
  authHeaders: (key) => ({ 'api-key': key }),
  modelTokenizer: 'o200k_base',
};
