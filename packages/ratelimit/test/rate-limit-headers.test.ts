// OpenAI-style reset durations, as in x-ratelimit-reset-requests / -tokens.
import { describe, expect, it } from '@jest/globals';
import { openAiDuration } from '../src/rate-limit-headers.js';

describe('openAiDuration', () => {
  it.each([
    [0, '0ms'],
    [20, '20ms'],
    [999, '999ms'],
    [1000, '1s'],
    [1500, '1.5s'],
    [59_999, '59.999s'],
    [60_000, '1m0s'],
    [360_000, '6m0s'],
    [90_500, '1m30.5s'],
    [3_723_000, '1h2m3s'],
    [-5, '0ms'],
  ])('%d ms is %s', (ms, text) => {
    expect(openAiDuration(ms)).toBe(text);
  });
});
