// What a request's reservation costs at a price: the whole answer at its cap, and the smallest answer worth running.
import type { Request } from 'express';
import { affordableOutputTokens, maxCostNanoUsd } from '@tollgate/core/costs';
import type { UsageEstimate } from '@tollgate/core';
import type { ResolvedPrice } from '@tollgate/core/costs';

/** Completions that each get the output cap (OpenAI chat `n`). */
function choicesOf(estimate: UsageEstimate): number {
  const n = estimate.outputChoices;
  return typeof n === 'number' && Number.isSafeInteger(n) && n > 1 ? n : 1;
}

/**
 * Input plus the smallest answer, with input and output each rounded up on their own: a grant of
 * at least this always affords `minOutputTokens` in `affordableOutputTokens`, never one less.
 */
export function smallestAnswerCost(
  estimate: UsageEstimate,
  inputTokens: number,
  price: ResolvedPrice,
  minOutputTokens: number,
): number {
  // A media call's size is what it asks for (images, characters, audio): nothing clamps it, so it is all or nothing.
  if (estimate.media !== undefined) return fullAnswerCost(estimate, inputTokens, price);
  const outputTokens = Math.min(minOutputTokens, estimate.maxOutputTokens) * choicesOf(estimate);
  return maxCostNanoUsd(inputTokens, 0, price) + Math.ceil((outputTokens * price.outputMicro) / 1000);
}

/** The most a request may cost: `inputTokens`, every choice's whole output cap and the media it asks for. */
export function fullAnswerCost(estimate: UsageEstimate, inputTokens: number, price: ResolvedPrice): number {
  const media = estimate.media === undefined ? undefined : { media: estimate.media };
  return maxCostNanoUsd(inputTokens, estimate.maxOutputTokens * choicesOf(estimate), price, media);
}

/** Lowers the output cap so that `granted` pays for the whole answer (and input at its bound): the reservation is an upper bound again. */
export function clampOutput(
  req: Request,
  estimate: UsageEstimate,
  inputTokens: number,
  price: ResolvedPrice,
  granted: number,
): void {
  // With n choices each may use the whole cap: the grant is shared between them.
  const cap = Math.floor(affordableOutputTokens(granted, inputTokens, price) / choicesOf(estimate));
  req.tollgate.limitOutput(cap, price);
}
