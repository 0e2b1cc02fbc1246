// Where and how each configured upstream is called, read from its kind's declarations: the targets undici gets (base
// path kept, per-call paths built for each model), the models list the probe asks, the headers every call carries.
import { describe, expect, it } from '@jest/globals';
import { upstreamRequests } from '../src/upstreams/upstream-wire.js';

describe('an upstream of each kind', () => {
  it('OpenAI: each API at its path after the base URL, the key as a bearer token', () => {
    const openai = upstreamRequests('openai', 'https://proxy.example/openai/v1', {}, 'sk-1');
    expect(openai.destination('openai.chat', 'gpt-4o', false)).toEqual({
      origin: 'https://proxy.example',
      path: '/openai/v1/chat/completions',
    });
    expect(openai.destination('openai.responses', 'gpt-4o', true).path).toBe('/openai/v1/responses');
    expect(openai.destination('openai.embeddings', 'text-embedding-3-small', false).path).toBe('/openai/v1/embeddings');
    expect(openai.models).toEqual({ origin: 'https://proxy.example', path: '/openai/v1/models' });
    expect(openai.headers(undefined, true)).toEqual({
      'content-type': 'application/json',
      accept: 'text/event-stream',
      'accept-encoding': 'identity',
      'user-agent': 'tollgate-proxy',
      authorization: 'Bearer sk-1',
    });
    // A client's headers never reach an upstream that takes none of them.
    expect(openai.headers({ authorization: 'Bearer client', 'anthropic-version': '2023-06-01' }, false)).toEqual({
      'content-type': 'application/json',
      accept: 'application/json',
      'accept-encoding': 'identity',
      'user-agent': 'tollgate-proxy',
      authorization: 'Bearer sk-1',
    });
    expect(() => openai.destination('anthropic.messages', 'claude-sonnet-4-5', false)).toThrow(/does not speak/);
  });

  it("Anthropic: its key in x-api-key, the client's well-formed version and beta flags, its count path", () => {
    const anthropic = upstreamRequests(
      'anthropic',
      'https://api.anthropic.com',
      { anthropicVersion: '2024-01-01' },
      'a',
    );
    expect(anthropic.destination('anthropic.messages', 'claude-sonnet-4-5', true).path).toBe('/v1/messages');
    expect(anthropic.countDestination('anthropic.messages', 'claude-sonnet-4-5').path).toBe(
      '/v1/messages/count_tokens',
    );
    expect(anthropic.models.path).toBe('/v1/models');
    expect(anthropic.headers({ 'anthropic-beta': 'tools-1', authorization: 'Bearer client' }, false)).toMatchObject({
      'x-api-key': 'a',
      'anthropic-version': '2024-01-01',
      'anthropic-beta': 'tools-1',
    });
    expect(anthropic.headers(undefined, false)).not.toHaveProperty('authorization');
  });

  it("Gemini: the call's model and method in the path, built per model and stream flag", () => {
    const gemini = upstreamRequests('gemini', 'https://generativelanguage.googleapis.com/v1beta/', {}, 'g');
    expect(gemini.destination('gemini.generate', 'gemini-2.5-flash', false).path).toBe(
      '/v1beta/models/gemini-2.5-flash:generateContent',
    );
    const stream = gemini.destination('gemini.generate', 'gemini-2.5-flash', true);
    expect(stream.path).toBe('/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse');
    expect(gemini.destination('gemini.generate', 'gemini-2.5-flash', true)).toBe(stream);
    expect(gemini.countDestination('gemini.generate', 'a/b').path).toBe('/v1beta/models/a%2Fb:countTokens');
    expect(gemini.headers(undefined, false)['x-goog-api-key']).toBe('g');
  });

  it('Azure OpenAI: chat at the deployment of the model, with the API version, the key in api-key', () => {
    const settings = { apiVersion: '2025-01-01', deployments: { 'gpt-4o': 'prod-4o' } };
    const azure = upstreamRequests('azure-openai', 'https://acme.openai.azure.com', settings, 'z');
    expect(azure.destination('openai.chat', 'gpt-4o', false).path).toBe(
      '/openai/deployments/prod-4o/chat/completions?api-version=2025-01-01',
    );
    expect(azure.destination('openai.compatible', 'gpt-4o-mini', true).path).toBe(
      '/openai/deployments/gpt-4o-mini/chat/completions?api-version=2025-01-01',
    );
    expect(azure.models.path).toBe('/openai/models?api-version=2025-01-01');
    expect(upstreamRequests('azure-openai', 'https://a.example', {}, 'z').models.path).toBe(
      '/openai/models?api-version=2024-10-21',
    );
    const headers = azure.headers(undefined, false);
    expect(headers['api-key']).toBe('z');
    expect(headers).not.toHaveProperty('authorization');
    expect(() => azure.destination('openai.responses', 'gpt-4o', false)).toThrow(/does not speak/);
  });

  it('without a key, calls carry none; a kind no adapter declares is refused', () => {
    expect(
      upstreamRequests('openai-compatible', 'http://localhost:8000/v1', {}, undefined).headers(undefined, false),
    ).toEqual({
      'content-type': 'application/json',
      accept: 'application/json',
      'accept-encoding': 'identity',
      'user-agent': 'tollgate-proxy',
    });
    expect(() => upstreamRequests('bedrock', 'https://x.example', {}, 'k')).toThrow(/No adapter declares/);
  });
});
