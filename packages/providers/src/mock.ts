// @tollgate/providers/mock: the built-in mock provider, a test upstream that speaks every API a gateway serves (JSON
// and SSE, each family's own shapes), with usage it can predict and failures on demand.
export { createMockProvider } from './mock-provider/server.js';
export type { MockApi, MockBehavior, MockProvider, MockRequestLog } from './mock-provider/server.js';
export { countPromptTokens } from './mock-provider/reply.js';
