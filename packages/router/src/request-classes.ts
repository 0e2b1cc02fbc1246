// Request classes: a model alias (e.g. `auto`) whose rules send each request to a group by what it is.
import type { ResolvedClassRule, ResolvedGroup, ResolvedRequestClass } from './options.js';

/** What the rules look at, read once from the request. */
export interface RequestTraits {
  /** Estimated input tokens. */
  inputTokens: number;
  /** The request defines tools. */
  tools: boolean;
  /** The request carries images. */
  images: boolean;
  /** The route path it came on. */
  route?: string | undefined;
  /** The class the caller named in the class header, if any. */
  requestedClass?: string | undefined;
}

function matches(rule: ResolvedClassRule, traits: RequestTraits): boolean {
  if (rule.header !== undefined && rule.header !== traits.requestedClass) return false;
  if (rule.minInputTokens !== undefined && traits.inputTokens < rule.minInputTokens) return false;
  if (rule.maxInputTokens !== undefined && traits.inputTokens > rule.maxInputTokens) return false;
  if (rule.tools !== undefined && rule.tools !== traits.tools) return false;
  if (rule.images !== undefined && rule.images !== traits.images) return false;
  return rule.route === undefined || rule.route === traits.route;
}

/** The group of the first rule that holds, else the class's default. */
export function classifyRequest(requestClass: ResolvedRequestClass, traits: RequestTraits): ResolvedGroup {
  for (const rule of requestClass.rules) if (matches(rule, traits)) return rule.group;
  return requestClass.fallbackGroup;
}
