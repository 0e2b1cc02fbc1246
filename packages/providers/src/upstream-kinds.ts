// The kinds of upstream the adapters declare (`upstream`, `upstreamVariants`): how each is reached, what it speaks.
import type { ProviderApi } from '@tollgate/core';
import type { ProviderAdapter, UpstreamWire } from './adapter.js';
import { providerAdapters } from './adapters.js';

/** One kind of upstream (`upstreams.<name>.api` in a gateway's config), as the adapters declare it. */
export interface UpstreamKind {
  readonly kind: string;
  /** How the kind is reached (key header, models path, headers, names, hints): its own API's wire. */
  readonly wire: UpstreamWire;
  /** Its own API: what a request of an API the kind does not speak is translated to. */
  readonly ownApi: ProviderApi;
  /** Each API the kind speaks as it is, with its wire there (its path). */
  readonly apis: ReadonlyMap<ProviderApi, UpstreamWire>;
}

/** A kind's own API is the first adapter declaring it as its `upstream`, else the first listing it as a variant. */
function collectKinds(adapters: readonly ProviderAdapter[]): ReadonlyMap<string, UpstreamKind> {
  const kinds = new Map<
    string,
    { kind: string; wire: UpstreamWire; ownApi: ProviderApi; apis: Map<ProviderApi, UpstreamWire> }
  >();
  const own = (adapter: ProviderAdapter, wire: UpstreamWire) => {
    if (!kinds.has(wire.kind)) kinds.set(wire.kind, { kind: wire.kind, wire, ownApi: adapter.api, apis: new Map() });
  };
  for (const adapter of adapters) if (adapter.upstream) own(adapter, adapter.upstream);
  for (const adapter of adapters) for (const wire of adapter.upstreamVariants ?? []) own(adapter, wire);
  for (const adapter of adapters) {
    for (const wire of wiresOf(adapter)) {
      const apis = kinds.get(wire.kind)!.apis;
      if (!apis.has(adapter.api)) apis.set(adapter.api, wire);
    }
  }
  return kinds;
}

const KINDS = collectKinds(providerAdapters());

/** Every kind of upstream the adapters declare, by kind: those of the APIs' own `upstream`, then the variants. */
export function upstreamKinds(): ReadonlyMap<string, UpstreamKind> {
  return KINDS;
}

/** The wires an adapter declares: its `upstream`, then its variants. */
function wiresOf(adapter: ProviderAdapter): readonly UpstreamWire[] {
  return [...(adapter.upstream ? [adapter.upstream] : []), ...(adapter.upstreamVariants ?? [])];
}

const KINDS_SPEAKING: ReadonlyMap<ProviderApi, readonly string[]> = new Map(
  providerAdapters().map((adapter) => [adapter.api, [...new Set(wiresOf(adapter).map((wire) => wire.kind))]]),
);

/** The kinds of upstream that speak `api` as it is: its adapter's `upstream`, then its variants. */
export function kindsSpeaking(api: ProviderApi): readonly string[] {
  return KINDS_SPEAKING.get(api) ?? [];
}
