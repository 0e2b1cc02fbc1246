// What the config validator says about a config it refuses: the message, checked to be a ConfigError.
import { expect } from '@jest/globals';
import { ConfigError, validateConfig } from '../../src/config/index.js';

export function rejection(config: unknown): string {
  try {
    validateConfig(config);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).code).toBe('ERR_TG_PROXY_INVALID_CONFIG');
    return (error as Error).message;
  }
  throw new Error('the config was accepted');
}
