// @tollgate/providers/sse: for the packages that read or write a provider's server-sent events (the meter, the cache,
// the router's translation, the guard's answer text): the one SSE decoder and the one event writer.
export { SseDecoder } from './sse-decoder.js';
export type { SseBlock } from './sse-decoder.js';
export { sseEvent } from './usage.js';
