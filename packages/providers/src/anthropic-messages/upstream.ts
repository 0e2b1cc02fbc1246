// How an Anthropic upstream is reached: its base URL without `/v1` (as its SDK's), its key header, its version header.
import type { ClientHeaders, UpstreamSettings, UpstreamWire } from '../adapter.js';

/** The `anthropic-version` sent when neither the client nor the upstream's entry names one. */
const DEFAULT_ANTHROPIC_VERSION = '2023-06-01';

/** Anthropic's version and beta flags are the client's choice, when well-formed; else the entry's version. */
function anthropicHeaders(client: ClientHeaders | undefined, settings: UpstreamSettings): Record<string, string> {
  const version = client?.['anthropic-version'];
  const beta = client?.['anthropic-beta'];
  return {
    'anthropic-version':
      typeof version === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(version)
        ? version
        : (settings.anthropicVersion ?? DEFAULT_ANTHROPIC_VERSION),
    ...(typeof beta === 'string' && /^[\w.,\s-]{1,512}$/.test(beta) ? { 'anthropic-beta': beta } : {}),
  };
}

/** Anthropic's API (`api: "anthropic"`, the kind of an upstream named `anthropic`). */
export const ANTHROPIC_UPSTREAM: UpstreamWire = {
  kind: 'anthropic',
  baseUrl: 'https://api.anthropic.com',
  keyEnv: 'ANTHROPIC_API_KEY',
  path: '/v1/messages',
  modelsPath: '/v1/models',
  oneTokenCall: (model) => ({ model, max_tokens: 1, messages: [{ role: 'user', content: 'ping' }] }),
  statusPage: 'https://status.anthropic.com/api/v2/status.json',
  authHeaders: (key) => ({ 'x-api-key': key }),
  callHeaders: anthropicHeaders,
};
