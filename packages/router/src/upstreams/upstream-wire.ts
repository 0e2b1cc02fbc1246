// Where and how one configured upstream is called, read from the wires its kind's adapters declare.
import type { ProviderApi } from '@tollgate/core';
import { adapterFor } from '@tollgate/providers';
import { upstreamKinds } from '@tollgate/providers/routes';
import type { ClientHeaders, UpstreamSettings, UpstreamWire } from '@tollgate/providers/routes';

/** Where a call goes, split once as undici's dispatch takes it (request() would parse the URL on every call). */
export interface UpstreamTarget {
  readonly origin: string;
  readonly path: string;
}

/** One upstream's requests: their targets and headers. */
export interface UpstreamRequests {
  /** Where a call of `api` (one the upstream's kind speaks) runs for `model`. */
  destination(api: ProviderApi, model: string, stream: boolean): UpstreamTarget;
  /** Where the token count of `api` (its adapter's `countTokens`) runs for `model`. */
  countDestination(api: ProviderApi, model: string): UpstreamTarget;
  /** Where the upstream lists its models (the free health probe). */
  readonly models: UpstreamTarget;
  /** The paid health probe of `model`: its kind's one-token call, or undefined when the kind declares none. */
  oneTokenCall(model: string): (UpstreamTarget & { body: string }) | undefined;
  /**
   * A call's headers, built from scratch: nothing of the client's request (its credentials above all) is forwarded by
   * accident, but what the kind takes from it (`callHeaders`). `client` is absent for the gateway's own calls.
   */
  headers(client: ClientHeaders | undefined, stream: boolean): Readonly<Record<string, string>>;
}

/** Destinations kept per API and stream flag: the models a gateway calls are the priced ones, a bounded few. */
const MAX_KEPT_TARGETS = 1000;

/** A call's destination for each model and stream flag, built once for each (past the bound, built every time). */
function perCallTargets(
  origin: string,
  basePath: string,
  path: (call: { model: string; stream: boolean }, settings: UpstreamSettings) => string,
  settings: UpstreamSettings,
): (model: string, stream: boolean) => UpstreamTarget {
  const built = [new Map<string, UpstreamTarget>(), new Map<string, UpstreamTarget>()];
  return (model, stream) => {
    const targets = built[stream ? 1 : 0]!;
    let target = targets.get(model);
    if (target === undefined) {
      target = { origin, path: `${basePath}${path({ model, stream }, settings)}` };
      if (targets.size < MAX_KEPT_TARGETS) targets.set(model, target);
    }
    return target;
  };
}

/** Each API's destination at the upstream, from the wire its kind declares for it. */
function apiTargets(
  apis: ReadonlyMap<ProviderApi, UpstreamWire>,
  baseUrl: string,
  settings: UpstreamSettings,
): ReadonlyMap<ProviderApi, (model: string, stream: boolean) => UpstreamTarget> {
  const base = new URL(baseUrl);
  const basePath = base.pathname.replace(/\/+$/, '');
  return new Map(
    [...apis].map(([api, { path }]) => {
      if (typeof path !== 'string') return [api, perCallTargets(base.origin, basePath, path, settings)];
      const url = new URL(`${baseUrl}${path}`);
      const target = { origin: url.origin, path: `${url.pathname}${url.search}` };
      return [api, () => target];
    }),
  );
}

/**
 * The requests of an upstream of `kind` at `baseUrl`, with `apiKey` (none: calls carry no key) and its entry's
 * `settings`. A kind no adapter declares is a configuration error (the config's schema refuses it first).
 */
export function upstreamRequests(
  kind: string,
  baseUrl: string,
  settings: UpstreamSettings,
  apiKey: string | undefined,
): UpstreamRequests {
  const declared = upstreamKinds().get(kind);
  if (!declared) throw new Error(`No adapter declares the upstream kind "${kind}"`);
  const { wire } = declared;
  const targets = apiTargets(declared.apis, baseUrl, settings);
  const base = new URL(baseUrl);
  const basePath = base.pathname.replace(/\/+$/, '');
  const modelsPath = typeof wire.modelsPath === 'string' ? wire.modelsPath : wire.modelsPath(settings);
  const fixedHeaders = (stream: boolean): Readonly<Record<string, string>> =>
    Object.freeze({
      'content-type': 'application/json',
      accept: stream ? 'text/event-stream' : 'application/json',
      // Usage is read from the bytes on the way through: they must arrive uncompressed.
      'accept-encoding': 'identity',
      'user-agent': 'tollgate-proxy',
      ...(apiKey ? wire.authHeaders(apiKey) : {}),
    });
  const jsonHeaders = fixedHeaders(false);
  const streamHeaders = fixedHeaders(true);
  const callHeaders = wire.callHeaders;
  return {
    destination(api, model, stream) {
      const target = targets.get(api);
      if (!target) throw new Error(`The ${kind} upstream does not speak ${api}`);
      return target(model, stream);
    },
    countDestination: (api, model) => ({
      origin: base.origin,
      path: `${basePath}${adapterFor(api).countTokens!.upstreamPath(encodeURIComponent(model))}`,
    }),
    models: { origin: base.origin, path: `${basePath}${modelsPath}` },
    oneTokenCall(model) {
      const body = wire.oneTokenCall?.(model);
      const target = body && targets.get(declared.ownApi);
      return target ? { ...target(model, false), body: JSON.stringify(body) } : undefined;
    },
    headers(client, stream) {
      const headers = stream ? streamHeaders : jsonHeaders;
      if (!callHeaders) return headers;
      // Object.assign, not a literal opening with `...headers`: properties after a leading spread are slow on Node 20.
      return Object.assign({}, headers, callHeaders(client, settings));
    },
  };
}
