// What the config validator says about a config it refuses: the message, checked to be a ConfigError.
import { expect } from '@jest/globals';
import { ConfigError, validateConfig } from '../../src/config/index.js';
import { WITH_MOCK } from './mock-upstream.js';

/** The message refusing `config`, served by the mock unless it names upstreams (so only its own problems show). */
export function rejection(config: unknown): string {
  const object = typeof config === 'object' && config !== null && !Array.isArray(config);
  try {
    validateConfig(object ? { ...WITH_MOCK, ...config } : config);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).code).toBe('ERR_TG_PROXY_INVALID_CONFIG');
    return (error as Error).message;
  }
  throw new Error('the config was accepted');
}
