// The provider call stage the gateway composes: calls forwarded to each upstream over undici, routed across model
// groups, probed for health; and the routing config's check.
export { createProviderRouter, providerOfModel } from './upstreams/provider-routing.js';
export type { ProviderRouter, RealtimeUpstream } from './upstreams/provider-routing.js';
export { checkRouting } from './upstreams/routing-config.js';
export type { RoutingConfig } from './upstreams/routing-config.js';
