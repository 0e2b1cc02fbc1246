// Automatic Anthropic prompt caching: breakpoints only past the provider's minimum, never over the client's own.
import { describe, expect, it } from '@jest/globals';
import { addPromptCacheBreakpoints } from '../src/prompt-caching.js';
import { anthropicCacheMinimum, anthropicPromptCaching } from '@tollgate/cache';

const long = (words: number) => Array.from({ length: words }, (_, i) => `word${i}`).join(' ');
const tool = (name: string, description: string) => ({
  name,
  description,
  input_schema: { type: 'object', properties: {} },
});

describe('anthropicCacheMinimum', () => {
  it('follows the provider per model family', () => {
    expect(anthropicCacheMinimum('claude-sonnet-4-5')).toBe(1024);
    expect(anthropicCacheMinimum('claude-opus-4-1-20250805')).toBe(1024);
    expect(anthropicCacheMinimum('claude-3-5-haiku-latest')).toBe(2048);
    expect(anthropicCacheMinimum('claude-haiku-4-5')).toBe(4096);
    expect(anthropicCacheMinimum('claude-opus-4-5')).toBe(4096);
  });
});

describe('addPromptCacheBreakpoints', () => {
  it('marks a long system prompt, turning a string into a text block', () => {
    const body = { model: 'claude-sonnet-4-5', system: long(2000), messages: [{ role: 'user', content: 'hi' }] };
    const system = body.system;
    expect(addPromptCacheBreakpoints(body, body.model)).toBe(1);
    expect(body.system).toEqual([{ type: 'text', text: system, cache_control: { type: 'ephemeral' } }]);
  });

  it('marks the last tool when the tools alone are long, and the system block after them', () => {
    const body: Record<string, unknown> = {
      tools: [tool('a', 'short'), tool('b', long(2000))],
      system: [{ type: 'text', text: 'You are terse.' }],
      messages: [{ role: 'user', content: 'hi' }],
    };
    expect(addPromptCacheBreakpoints(body, 'claude-sonnet-4-5', { ttl: '1h' })).toBe(2);
    const tools = body.tools as Record<string, unknown>[];
    expect(tools[0]!.cache_control).toBeUndefined();
    expect(tools[1]!.cache_control).toEqual({ type: 'ephemeral', ttl: '1h' });
    expect((body.system as Record<string, unknown>[])[0]!.cache_control).toEqual({ type: 'ephemeral', ttl: '1h' });
  });

  it('leaves a short prefix, and a body that carries its own breakpoints, as they are', () => {
    const short = { system: 'You are terse.', messages: [{ role: 'user', content: 'hi' }] };
    expect(addPromptCacheBreakpoints(short, 'claude-sonnet-4-5')).toBe(0);
    expect(short.system).toBe('You are terse.');
    const own = {
      system: long(2000),
      messages: [{ role: 'user', content: [{ type: 'text', text: 'hi', cache_control: { type: 'ephemeral' } }] }],
    };
    expect(addPromptCacheBreakpoints(own, 'claude-sonnet-4-5')).toBe(0);
    expect(typeof own.system).toBe('string');
    // Past the Sonnet minimum but short of Haiku 4.5's.
    const medium = { system: long(600), messages: [] };
    expect(addPromptCacheBreakpoints(medium, 'claude-haiku-4-5')).toBe(0);
    expect(addPromptCacheBreakpoints(medium, 'claude-haiku-4-5', { minTokens: 100 })).toBe(1);
  });
});

describe('anthropicPromptCaching', () => {
  it('rejects bad options by name', () => {
    expect(() => anthropicPromptCaching({ ttl: '2h' as never })).toThrow(/ttl must be "5m" or "1h"/);
    expect(() => anthropicPromptCaching({ minTokens: -1 })).toThrow(/minTokens/);
    expect(() => anthropicPromptCaching({ ttls: '1h' } as never)).toThrow(/ttl/);
  });
});
