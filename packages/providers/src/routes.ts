// @tollgate/providers/routes: for the gateway, which builds the provider routes from a config: the adapters by API
// and by upstream kind, the model-kind check, the shape of a request's problem, and Gemini's actions in its paths.
export { adapterOfUpstreamKind, providerAdapters } from './adapters.js';
export type { RequestProblem } from './adapter.js';
export { checkModelKind } from './estimate.js';
export { GEMINI_ACTIONS, GEMINI_COUNT_ACTION, GEMINI_STREAM_ACTION } from './gemini/index.js';
export { splitGeminiTarget } from './gemini/target.js';
