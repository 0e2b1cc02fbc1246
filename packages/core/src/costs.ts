// @tollgate/core/costs: for the adapters, the meter, the budget and the router: a model's resolved price, its kind
// and tokenizer family, and the cost arithmetic in nano-USD (an app prices with `createPricing`, at the main door).
export type { CallPricing, MediaPrice, ModelKind, PricingOptions, ResolvedPrice, TokenizerFamily } from './pricing.js';
/** What an audio or image call used beside its text tokens, billed in its model's units. */
export type { MediaUsage } from './types.js';
export {
  affordableOutputTokens,
  costNanoUsd,
  maxCostNanoUsd,
  mediaTokens,
  modelFamilies,
  priceAtCall,
  priceAtInput,
} from './pricing.js';
export { exactUsd, usdDecimal } from './money.js';
/** One model call of an answer made of several (Anthropic's `usage.iterations`), each priced at its own model. */
export type { UsageIteration } from './types.js';
/** A price source's refresh (`Pricing.refreshFrom`): what the gateway's `/admin/prices` shows. */
export type { PriceLoad, PriceRefresh } from './price-refresh.js';
/** One read of a price source as a refresh reads it (capped, validated, off the loop): the gateway's `--check`. */
export { readSourceOffLoop as readPriceSource } from './price-read.js';
