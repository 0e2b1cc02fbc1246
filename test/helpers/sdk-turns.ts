// Requests through the official SDKs to gateways that take turns, so every shared limit is counted across them.
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import type { RunningProxy } from './proxy.js';

/**
 * The `n`th request goes to gateway `n` modulo their number: `chat` through the OpenAI SDK (gpt-4o-mini), `message`
 * through the Anthropic SDK (claude-haiku-4-5), each asking for at most 100 output tokens to a prompt of "hi".
 */
export function sdkTurns(gateways: readonly RunningProxy[]) {
  const gateway = (n: number) => gateways[n % gateways.length]!;
  return {
    gateway,
    chat: (key: string, n: number) =>
      new OpenAI({ apiKey: key, baseURL: `${gateway(n).url}/v1`, maxRetries: 0 }).chat.completions.create({
        model: 'gpt-4o-mini',
        max_tokens: 100,
        messages: [{ role: 'user', content: 'hi' }],
      }),
    message: (key: string, n: number) =>
      new Anthropic({ apiKey: key, baseURL: gateway(n).url, maxRetries: 0 }).messages.create({
        model: 'claude-haiku-4-5',
        max_tokens: 100,
        messages: [{ role: 'user', content: 'hi' }],
      }),
  };
}
