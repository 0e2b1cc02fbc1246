// The routing part of the proxy config: a sound one is kept as written, each mistake is named by its field.
import { describe, expect, it } from '@jest/globals';
import { WITH_MOCK } from './helpers/mock-upstream.js';
import { validateConfig } from '../src/config/index.js';
import { rejection } from './helpers/config-rejection.js';

const upstreams = {
  openai: { baseUrl: 'https://api.openai.com/v1' },
  anthropic: { baseUrl: 'https://api.anthropic.com' },
};
const smart = {
  strategy: 'fallback',
  targets: [
    { upstream: 'openai', model: 'gpt-4o' },
    { upstream: 'anthropic', model: 'claude-sonnet-4-5' },
  ],
};

describe('routing config', () => {
  it('accepts the contract names (modelGroups, retry, circuitBreaker) with request classes and probes', () => {
    const config = validateConfig({
      ...WITH_MOCK,
      upstreams,
      modelGroups: {
        smart,
        quick: { strategy: 'cheapest', targets: [{ upstream: 'openai', model: 'gpt-4o-mini', weight: 2 }] },
      },
      requestClasses: { auto: { rules: [{ tools: true, group: 'smart' }], default: 'quick' } },
      retry: { attempts: 2, baseDelayMs: 250, maxDelayMs: 8000 },
      circuitBreaker: { failureThreshold: 5, windowMs: 30000, cooldownMs: 30000 },
      healthProbe: { intervalMs: 30000 },
    });
    expect(config.modelGroups?.smart).toEqual(smart);
    expect(config.retry).toEqual({ attempts: 2, baseDelayMs: 250, maxDelayMs: 8000 });
  });

  it('accepts an Azure OpenAI upstream with its api version and deployments', () => {
    const config = validateConfig({
      upstreams: {
        azure: {
          baseUrl: 'https://acme.openai.azure.com',
          api: 'azure-openai',
          apiVersion: '2024-10-21',
          deployments: { 'gpt-4o': 'prod' },
        },
      },
    });
    expect(config.upstreams?.azure).toMatchObject({ api: 'azure-openai', deployments: { 'gpt-4o': 'prod' } });
    expect(
      rejection({
        upstreams: { azure: { baseUrl: 'https://a.example', api: 'azure-openai', deployments: { 'gpt-4o': '' } } },
      }),
    ).toMatch(/upstreams\.azure\.deployments\.gpt-4o/);
  });

  it('names the faulty field', () => {
    expect(rejection({ upstreams, modelGroups: { smart: { strategy: 'random', targets: smart.targets } } })).toMatch(
      /modelGroups\.smart\.strategy must be one of fallback, cheapest/,
    );
    expect(
      rejection({ upstreams, modelGroups: { smart: { targets: [{ upstream: 'azure', model: 'gpt-4o' }] } } }),
    ).toMatch(/modelGroups\.smart\.targets\[0\]\.upstream names "azure", which is not a key of upstreams/);
    expect(
      rejection({ upstreams, modelGroups: { smart: { targets: [{ upstream: 'openai', model: 'gpt-9' }] } } }),
    ).toMatch(/modelGroups\.smart\.targets\[0\]\.model "gpt-9" has no price/);
    expect(rejection({ upstreams, retry: { attempts: -1 } })).toMatch(/retry\.attempts must be a non-negative integer/);
    expect(rejection({ upstreams, circuitBreaker: { failureTreshold: 3 } })).toMatch(
      /circuitBreaker\.failureTreshold is not an option/,
    );
    expect(
      rejection({
        upstreams,
        modelGroups: { smart },
        requestClasses: { auto: { rules: [{ group: 'smart' }], default: 'smart' } },
      }),
    ).toMatch(/requestClasses\.auto\.rules\[0\] has no condition/);
    expect(rejection({ modelGroups: { smart } })).toMatch(/modelGroups needs upstreams/);
    expect(rejection({ upstreams, healthProbe: { intervalMs: 0 } })).toMatch(
      /healthProbe\.intervalMs must be a positive integer/,
    );
  });

  it('accepts a target model priced by the config itself', () => {
    const config = validateConfig({
      upstreams: { local: { baseUrl: 'http://127.0.0.1:8000/v1', api: 'openai-compatible' } },
      models: { 'llama-3-70b': { provider: 'local', inputPerMTok: 0.2, outputPerMTok: 0.6 } },
      modelGroups: { open: { targets: [{ upstream: 'local', model: 'llama-3-70b' }] } },
    });
    expect(config.modelGroups?.open?.targets[0]?.model).toBe('llama-3-70b');
  });
});
