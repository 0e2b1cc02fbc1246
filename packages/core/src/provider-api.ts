// Which provider API a request speaks, and the few body fields every middleware reads: model, output cap, stream.

export type ProviderApi = 'openai.chat' | 'openai.responses' | 'anthropic.messages';

/** The API a request path speaks, by its suffix (works under any mount path), or undefined. */
export function detectProviderApi(path: string): ProviderApi | undefined {
  const clean = path.split('?')[0] ?? '';
  if (clean.endsWith('/chat/completions')) return 'openai.chat';
  if (clean.endsWith('/responses')) return 'openai.responses';
  if (clean.endsWith('/messages')) return 'anthropic.messages';
  return undefined;
}

export function providerOf(api: ProviderApi): 'openai' | 'anthropic' {
  return api === 'anthropic.messages' ? 'anthropic' : 'openai';
}

type Body = Record<string, unknown>;

function isBody(body: unknown): body is Body {
  return typeof body === 'object' && body !== null && !Array.isArray(body);
}

/** The `model` of a JSON body, if it is a non-empty string. */
export function requestModel(body: unknown): string | undefined {
  return isBody(body) && typeof body.model === 'string' && body.model.length > 0 ? body.model : undefined;
}

export function requestStreams(body: unknown): boolean {
  return isBody(body) && body.stream === true;
}

/** The output-cap fields by API, in the order they win. */
const OUTPUT_CAP_FIELDS: Record<ProviderApi, readonly string[]> = {
  'openai.chat': ['max_completion_tokens', 'max_tokens'],
  'openai.responses': ['max_output_tokens'],
  'anthropic.messages': ['max_tokens'],
};

/** The output cap the client asked for (a positive integer), or undefined when absent or not a positive integer. */
export function requestOutputCap(body: unknown, api: ProviderApi): number | undefined {
  if (!isBody(body)) return undefined;
  for (const field of OUTPUT_CAP_FIELDS[api]) {
    const value = body[field];
    if (typeof value === 'number' && Number.isSafeInteger(value) && value > 0) return value;
  }
  return undefined;
}

/**
 * Sets the output cap in the body, in the field the API uses (keeping the client's choice
 * between `max_tokens` and `max_completion_tokens` on chat), so the provider enforces it.
 */
export function setRequestOutputCap(body: unknown, api: ProviderApi, cap: number): void {
  if (!isBody(body)) return;
  const fields = OUTPUT_CAP_FIELDS[api];
  const present = fields.filter((field) => body[field] !== undefined);
  if (present.length === 0) body[fields[0]!] = cap;
  else for (const field of present) body[field] = cap;
}

/** `*` matches anything; `prefix*` matches by prefix; otherwise exact (dated ids match their family too). */
export function isModelAllowed(model: string, patterns: readonly string[]): boolean {
  for (const pattern of patterns) {
    if (pattern === '*' || pattern === model) return true;
    if (pattern.endsWith('*') && model.startsWith(pattern.slice(0, -1))) return true;
    if (model.startsWith(`${pattern}-`) && /^-(\d{4}-\d{2}-\d{2}|\d{8}|latest)$/.test(model.slice(pattern.length))) return true;
  }
  return false;
}
