// OpenAI-compatible self-hosted servers (vLLM, Ollama, llama.cpp server): Chat Completions as they speak it.
import type { ProviderAdapter } from '../adapter.js';
import { AZURE_OPENAI_UPSTREAM } from '../openai-chat/azure.js';
import { chatCompletionsAdapter } from '../openai-chat/index.js';
import { OPENAI_COMPATIBLE_UPSTREAM, OPENAI_UPSTREAM } from '../openai-chat/upstreams.js';

/**
 * The Chat Completions wire format, as self-hosted servers speak it: `max_tokens` is the cap they
 * all read (written first; `max_completion_tokens` too when the client sent it), their models are
 * counted by approximation unless the catalogue names a tokenizer, and their streams may ignore
 * the cap: the meter's hard stop ends them at the grant. Usage in streams is asked for with
 * `stream_options.include_usage`, which vLLM, Ollama and llama.cpp server honour; when a server
 * sends none, the output that passed is counted.
 */
export const openAiCompatible: ProviderAdapter = {
  ...chatCompletionsAdapter({
    api: 'openai.compatible',
    provider: 'self-hosted',
    capFields: ['max_tokens', 'max_completion_tokens'],
    label: 'OpenAI-compatible',
  }),
  upstream: OPENAI_COMPATIBLE_UPSTREAM,
  // Both OpenAI kinds and Azure's deployments take a self-hosted server's requests as they are.
  upstreamVariants: [OPENAI_UPSTREAM, AZURE_OPENAI_UPSTREAM],
  fromChat(body) {
    // Self-hosted servers may know only the older field.
    if (body.max_completion_tokens !== undefined && body.max_tokens === undefined)
      body.max_tokens = body.max_completion_tokens;
    return body;
  },
};
