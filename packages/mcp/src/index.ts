// @tollgate/mcp: MCP servers behind the chain's keys, limits and budgets; each tool call allowed, priced and recorded.
export { createMcpGateway } from './gateway.js';
export type { McpGateway } from './gateway.js';
export type { McpGatewayOptions, McpServerOptions, McpStages } from './options.js';
export { HEADER_MISMATCH, TOOL_CALL_REFUSED } from './json-rpc-errors.js';
export { STATELESS_PROTOCOL_VERSION } from './routing-headers.js';
export { MAX_SESSIONS_PER_KEY } from './sessions.js';
