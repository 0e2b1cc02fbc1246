// What auth and the meter leave on a request, for tests of the limits and the budget without them.
import type { RequestHandler } from 'express';
import { createPricing, getContext } from '@tollgate/core';
import { openAiChat } from '@tollgate/providers';

const pricing = createPricing();

/**
 * The caller (key `k1`, the tenant of `x-tenant`, else `acme`) and the estimate of a gpt-4o-mini chat call of 1,000
 * input tokens and the body's `max_tokens` ($0.15 input, $0.60 output per 1M tokens).
 */
export const estimateAndIdentify: RequestHandler = (req, res, next) => {
  const context = getContext(req, res);
  context.identity = { keyId: 'k1', tenantId: req.header('x-tenant') ?? 'acme', scopes: [], authMethod: 'api_key' };
  const maxOutputTokens = Number(req.body.max_tokens);
  const price = pricing.find('gpt-4o-mini')!;
  // What the meter does: the call is declared (its cap can be clamped in the body) and estimated.
  context.declareCall(openAiChat, { body: req.body });
  context.setEstimate(
    {
      provider: 'openai',
      model: 'gpt-4o-mini',
      inputTokens: 1000,
      maxOutputTokens,
      totalTokens: 1000 + maxOutputTokens,
      costNanoUsd: Math.ceil((1000 * price.inputMicro + maxOutputTokens * price.outputMicro) / 1000),
    },
    price,
  );
  next();
};
