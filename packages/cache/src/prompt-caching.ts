// Automatic Anthropic prompt caching: cache_control breakpoints on the long, stable start of a request (tools, system prompt).
import type { NextFunction, Request, Response } from 'express';
import { getContext, TollgateError } from '@tollgate/core';
import { assertKnownOptions } from '@tollgate/core/options';

interface PromptCachingOptions {
  /**
   * The fewest tokens a cached prefix must hold, else no breakpoint is placed (Anthropic caches
   * nothing shorter, and charges nothing for a breakpoint it ignores).
   * @default the provider's minimum for the model (see `anthropicCacheMinimum`)
   */
  minTokens?: number;
  /** Lifetime of the cache entries written: `5m` (writes cost 1.25x input) or `1h` (2x). Reads cost 0.1x either way. @default "5m" */
  ttl?: '5m' | '1h';
}

const KNOWN_OPTIONS = ['minTokens', 'ttl'] as const satisfies readonly (keyof PromptCachingOptions)[];

/**
 * The shortest prompt prefix Anthropic caches, per model family (its prompt-caching docs): 4096
 * tokens for Claude Opus 4.5 and Haiku 4.5, 2048 for the Haiku 3 family, 1024 for the others.
 */
export function anthropicCacheMinimum(model: string): number {
  if (/^claude-(opus|haiku)-4-5/.test(model)) return 4096;
  if (/^claude-(3-5-)?haiku|^claude-3-haiku/.test(model)) return 2048;
  return 1024;
}

type Json = Record<string, unknown>;
const isObject = (value: unknown): value is Json =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * A cheap upper bound of a part's tokens: its JSON length over 3 (English runs at about 4
 * characters a token). A high guess at worst places a breakpoint Anthropic ignores, at no cost.
 */
const roughTokens = (value: unknown): number => (value === undefined ? 0 : Math.ceil(JSON.stringify(value).length / 3));

function hasCacheControl(value: unknown): boolean {
  if (Array.isArray(value)) return value.some(hasCacheControl);
  if (!isObject(value)) return false;
  if (value.cache_control !== undefined) return true;
  return Array.isArray(value.content) && value.content.some(hasCacheControl);
}

/**
 * Places `cache_control` breakpoints in an Anthropic Messages body, in place: on the last tool when
 * the tools alone reach the minimum, and on the last system block when tools and system together
 * do (a string system prompt becomes one text block). Returns how many it placed. A body that
 * already carries a breakpoint is left as it is: the client manages its cache.
 */
export function addPromptCacheBreakpoints(body: unknown, model: string, options: PromptCachingOptions = {}): number {
  if (!isObject(body)) return 0;
  const minTokens = options.minTokens ?? anthropicCacheMinimum(model);
  const marker: Json = options.ttl === '1h' ? { type: 'ephemeral', ttl: '1h' } : { type: 'ephemeral' };
  const tools = Array.isArray(body.tools) ? body.tools : [];
  if (hasCacheControl(tools) || hasCacheControl(body.system) || hasCacheControl(body.messages)) return 0;
  let placed = 0;
  const toolTokens = roughTokens(body.tools);
  const lastTool = tools.at(-1);
  if (toolTokens >= minTokens && isObject(lastTool)) {
    lastTool.cache_control = { ...marker };
    placed++;
  }
  const system = body.system;
  if (system === undefined || system === '' || toolTokens + roughTokens(system) < minTokens) return placed;
  if (typeof system === 'string') {
    body.system = [{ type: 'text', text: system, cache_control: { ...marker } }];
    return placed + 1;
  }
  const lastBlock = Array.isArray(system) ? system.at(-1) : undefined;
  if (isObject(lastBlock)) {
    lastBlock.cache_control = { ...marker };
    placed++;
  }
  return placed;
}

/**
 * Middleware that places prompt-cache breakpoints in the declared Anthropic call's body
 * (`req.tollgate.call.body`, what the route sends). Mount it after the response cache's answer
 * step (so the cache key is the client's body) and before the handler. The meter's estimate
 * already prices every input token at its dearest class (a 1-hour cache write), so budgets stay
 * upper bounds; the record then bills cache writes and reads as the provider reports them.
 */
export function anthropicPromptCaching(options: PromptCachingOptions = {}) {
  assertKnownOptions(options, KNOWN_OPTIONS, 'ERR_TG_CACHE_UNKNOWN_OPTION', 'anthropicPromptCaching');
  if (options.minTokens !== undefined && !(Number.isSafeInteger(options.minTokens) && options.minTokens > 0)) {
    throw new TollgateError(
      'ERR_TG_CACHE_INVALID_OPTION',
      'anthropicPromptCaching() option minTokens must be a positive integer',
    );
  }
  if (options.ttl !== undefined && options.ttl !== '5m' && options.ttl !== '1h') {
    throw new TollgateError(
      'ERR_TG_CACHE_INVALID_OPTION',
      `anthropicPromptCaching() option ttl must be "5m" or "1h"; got ${JSON.stringify(options.ttl)}`,
    );
  }
  return function placePromptCacheBreakpoints(req: Request, res: Response, next: NextFunction): void {
    const call = getContext(req, res).call;
    if (call && call.adapter.api === 'anthropic.messages' && call.model !== undefined)
      addPromptCacheBreakpoints(call.body, call.model, options);
    next();
  };
}
