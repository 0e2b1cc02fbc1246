// Every API's upstream wire, as its adapter declares it: the kinds of upstream, which APIs each speaks as it is, and
// how each is reached (path, key header, models path, call headers). The gateway reads these and names no API.
import { describe, expect, it } from '@jest/globals';
import { adapterFor, providerApis } from '@tollgate/providers';
import { kindsSpeaking, providerAdapters, upstreamKinds } from '@tollgate/providers/routes';
import type { UpstreamSettings, UpstreamWire } from '@tollgate/providers/routes';

const pathOf = (wire: UpstreamWire, model: string, stream: boolean, settings: UpstreamSettings = {}) =>
  typeof wire.path === 'string' ? wire.path : wire.path({ model, stream }, settings);
const modelsPathOf = (wire: UpstreamWire, settings: UpstreamSettings = {}) =>
  typeof wire.modelsPath === 'string' ? wire.modelsPath : wire.modelsPath(settings);
const kind = (name: string) => upstreamKinds().get(name)!;

describe('the kinds of upstream the adapters declare', () => {
  it('are the kinds a config may name, each with its own API (what other APIs are translated to for it)', () => {
    expect(Object.fromEntries([...upstreamKinds().values()].map((entry) => [entry.kind, entry.ownApi]))).toEqual({
      openai: 'openai.chat',
      anthropic: 'anthropic.messages',
      'openai-compatible': 'openai.compatible',
      gemini: 'gemini.generate',
      mistral: 'mistral.chat',
      'azure-openai': 'openai.chat',
    });
  });

  it('speak each API as it is: Chat Completions by both OpenAI kinds and Azure, the rest by their own', () => {
    expect(Object.fromEntries(providerApis().map((api) => [api, kindsSpeaking(api)]))).toEqual({
      'openai.chat': ['openai', 'openai-compatible', 'azure-openai'],
      'openai.compatible': ['openai-compatible', 'openai', 'azure-openai'],
      'openai.responses': ['openai'],
      'anthropic.messages': ['anthropic'],
      'gemini.generate': ['gemini'],
      'mistral.chat': ['mistral'],
      'openai.embeddings': ['openai'],
      'openai.speech': ['openai'],
      'openai.images': ['openai'],
      'openai.transcriptions': ['openai'],
    });
  });

  it('every wire of one kind says the same of how the kind is reached; each says its own path', () => {
    const settings = { apiVersion: '2025-01-01', anthropicVersion: '2024-01-01' };
    for (const adapter of providerAdapters()) {
      for (const wire of [...(adapter.upstream ? [adapter.upstream] : []), ...(adapter.upstreamVariants ?? [])]) {
        const own = kind(wire.kind).wire;
        expect({ kind: wire.kind, names: wire.names, baseUrl: wire.baseUrl, keyEnv: wire.keyEnv }).toEqual({
          kind: own.kind,
          names: own.names,
          baseUrl: own.baseUrl,
          keyEnv: own.keyEnv,
        });
        expect(wire.authHeaders('k-1')).toEqual(own.authHeaders('k-1'));
        expect(modelsPathOf(wire, settings)).toBe(modelsPathOf(own, settings));
        expect(wire.callHeaders?.(undefined, settings)).toEqual(own.callHeaders?.(undefined, settings));
        expect(wire.modelTokenizer).toBe(own.modelTokenizer);
        expect(kind(wire.kind).apis.get(adapter.api)).toBe(wire);
      }
    }
  });

  it('carry the key where each provider reads it', () => {
    const headers = Object.fromEntries(
      [...upstreamKinds().values()].map((entry) => [entry.kind, entry.wire.authHeaders('k-1')]),
    );
    expect(headers).toEqual({
      openai: { authorization: 'Bearer k-1' },
      'openai-compatible': { authorization: 'Bearer k-1' },
      mistral: { authorization: 'Bearer k-1' },
      anthropic: { 'x-api-key': 'k-1' },
      gemini: { 'x-goog-api-key': 'k-1' },
      'azure-openai': { 'api-key': 'k-1' },
    });
  });

  it('are chosen by an upstream name only where the kind says so; OpenAI-speaking ones count with o200k_base', () => {
    const names = Object.fromEntries([...upstreamKinds().values()].map((entry) => [entry.kind, entry.wire.names]));
    expect(names).toMatchObject({ gemini: ['gemini', 'google'], 'openai-compatible': [], 'azure-openai': [] });
    expect(names.openai ?? ['openai']).toEqual(['openai']);
    const tokenizers = [...upstreamKinds().values()].filter((entry) => entry.wire.modelTokenizer === 'o200k_base');
    expect(tokenizers.map((entry) => entry.kind).sort()).toEqual(['azure-openai', 'openai', 'openai-compatible']);
  });
});

describe('the paths each API declares at its upstreams', () => {
  it('OpenAI (base URL with /v1) and Anthropic (without): one path per API', () => {
    const openai = kind('openai');
    expect(pathOf(openai.apis.get('openai.chat')!, 'gpt-4o', false)).toBe('/chat/completions');
    expect(pathOf(openai.apis.get('openai.responses')!, 'gpt-4o', true)).toBe('/responses');
    expect(pathOf(openai.apis.get('openai.embeddings')!, 'text-embedding-3-small', false)).toBe('/embeddings');
    expect(modelsPathOf(openai.wire)).toBe('/models');
    expect(pathOf(kind('anthropic').wire, 'claude-sonnet-4-5', true)).toBe('/v1/messages');
    expect(modelsPathOf(kind('anthropic').wire)).toBe('/v1/models');
    expect(adapterFor('anthropic.messages').countTokens!.upstreamPath('m')).toBe('/v1/messages/count_tokens');
  });

  it("Azure OpenAI, an upstream variant of chat: the model's deployment and the API version, in the path", () => {
    const azure = kind('azure-openai');
    const settings = { apiVersion: '2024-10-21', deployments: { 'gpt-4o': 'prod 4o' } };
    for (const api of ['openai.chat', 'openai.compatible'] as const) {
      expect(pathOf(azure.apis.get(api)!, 'gpt-4o', true, settings)).toBe(
        '/openai/deployments/prod%204o/chat/completions?api-version=2024-10-21',
      );
    }
    expect(pathOf(azure.wire, 'gpt-4o-mini', false)).toBe(
      '/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21',
    );
    expect(modelsPathOf(azure.wire, { apiVersion: '2025-01-01&x' })).toBe('/openai/models?api-version=2025-01-01%26x');
    expect(adapterFor('openai.chat').upstreamVariants).toContain(azure.wire);
  });

  it("Gemini: the call's model and method in the path, streams asked as SSE", () => {
    const gemini = kind('gemini').wire;
    expect(pathOf(gemini, 'gemini-2.5-flash', false)).toBe('/models/gemini-2.5-flash:generateContent');
    expect(pathOf(gemini, 'tuned/m 1', true)).toBe('/models/tuned%2Fm%201:streamGenerateContent?alt=sse');
    expect(modelsPathOf(gemini)).toBe('/models');
    expect(adapterFor('gemini.generate').countTokens!.upstreamPath('gemini-2.5-pro')).toBe(
      '/models/gemini-2.5-pro:countTokens',
    );
  });
});

describe("Anthropic's call headers", () => {
  const headers = kind('anthropic').wire.callHeaders!;

  it("take the client's version and beta flags when well-formed, else the entry's version, else the default", () => {
    expect(headers({ 'anthropic-version': '2023-01-01', 'anthropic-beta': 'a-1,b-2' }, {})).toEqual({
      'anthropic-version': '2023-01-01',
      'anthropic-beta': 'a-1,b-2',
    });
    expect(
      headers({ 'anthropic-version': '"><script>', 'anthropic-beta': 'a;b' }, { anthropicVersion: '2024-01-01' }),
    ).toEqual({
      'anthropic-version': '2024-01-01',
    });
    expect(headers(undefined, {})).toEqual({ 'anthropic-version': '2023-06-01' });
  });
});

describe("Gemini's route: the method beside the model in the path", () => {
  const route = adapterFor('gemini.generate').route!;

  it('reads model and method, for the calls and the count, and nothing else', () => {
    const methods = route.methods!;
    expect(methods.calls).toEqual(['generateContent', 'streamGenerateContent']);
    expect(adapterFor('gemini.generate').countTokens!.method).toBe('countTokens');
    expect(methods.read({ target: 'models:x:generateContent' })).toEqual({
      model: 'models:x',
      action: 'generateContent',
    });
    expect(methods.read({ target: 'gemini-2.5-pro:countTokens' })).toEqual({
      model: 'gemini-2.5-pro',
      action: 'countTokens',
    });
    expect(methods.read({ target: 'gemini-2.5-pro:embedContent' })).toBeUndefined();
    expect(methods.read({ target: 'gemini-2.5-pro' })).toBeUndefined();
    expect(methods.read({})).toBeUndefined();
  });

  it('refuses a stream not asked as SSE, and takes the key where Google SDKs put it', () => {
    const check = route.methods!.checkQuery!;
    expect(check('streamGenerateContent', {})).toEqual({
      param: 'alt',
      message: 'streamGenerateContent is served as SSE only: add ?alt=sse.',
    });
    expect(check('streamGenerateContent', { alt: 'sse' })).toBeUndefined();
    expect(check('generateContent', {})).toBeUndefined();
    expect(route.keyHeaders).toEqual(['x-goog-api-key']);
    expect(route.shown).toBe('/v1beta/models/{model}:generateContent');
  });
});
