// Forwards a (validated, metered) request to a real provider with undici and streams the answer back unbuffered.
import { Agent } from 'undici';
import type { NextFunction, Request, Response } from 'express';
import { PROVIDER_APIS } from '@tollgate/core';
import type { ProviderApi } from '@tollgate/core';
import type { ProviderCall } from '@tollgate/core/provider-call';
import { adapterFor } from '@tollgate/providers';
import { adapterOfUpstreamKind, GEMINI_STREAM_ACTION } from '@tollgate/providers/routes';
import { defaultUpstreamKind } from './config/index.js';
import type { UpstreamConfig, UpstreamKind } from './config/index.js';
import { secretRedactor } from './redact.js';
import { UpstreamAnswer } from './upstream-answer.js';
import type { RoutedTry, UpstreamObserver } from './upstream-answer.js';

const DEFAULT_ANTHROPIC_VERSION = '2023-06-01';
/** Azure OpenAI's generally available API version of Chat Completions, used when the config names none. */
const DEFAULT_AZURE_API_VERSION = '2024-10-21';
/**
 * At close, how long calls still running (answers read for their usage after the client left) get
 * before they are cut: a call cut then is charged its reservation's bound.
 */
const CLOSE_GRACE_MS = 2000;

export interface Upstream {
  readonly name: string;
  readonly api: UpstreamKind;
  /** Sends the request's body (as the chain left it) to the provider and streams the answer to `res`; failures reach `next`. */
  forward(api: ProviderApi, req: Request, res: Response, next: NextFunction): void;
  /**
   * One try of a router: `body`, already in `targetApi` (what this upstream speaks), sent for
   * `model`; the answer written to `res` as `routed` says (failures worth a retry handed back).
   */
  send(
    targetApi: ProviderApi,
    model: string,
    body: Record<string, unknown>,
    req: Request,
    res: Response,
    next: NextFunction,
    routed: RoutedTry,
  ): void;
  /**
   * A token count (the API's `countTokens`) for `model`, the client's body sent as it is and the answer passed back.
   * Counting is free: no call is noted for the meter, nothing is billed.
   */
  forwardCount(api: ProviderApi, model: string, req: Request, res: Response, next: NextFunction): void;
  /** The active health check: lists the upstream's models (no tokens spent); ok when it answers 2xx in time. */
  probe(timeoutMs: number): Promise<{ ok: boolean; detail?: string }>;
  /** Waits for the calls still running, a short grace at most, then cuts them. */
  close(): Promise<void>;
}

/** Where each kind of upstream lists its models, relative to its base URL. */
function modelsPath(kind: UpstreamKind, basePath: string, azureVersion: string): string {
  switch (kind) {
    case 'anthropic':
      return `${basePath}/v1/models`;
    case 'azure-openai':
      return `${basePath}/openai/models?api-version=${azureVersion}`;
    default:
      return `${basePath}${adapterOfUpstreamKind(kind)?.upstream?.modelsPath ?? '/models'}`;
  }
}

/** The header each kind of upstream reads its key from. */
function authHeader(kind: UpstreamKind, key: string): Record<string, string> {
  switch (kind) {
    case 'openai':
    case 'openai-compatible':
      return { authorization: `Bearer ${key}` };
    case 'azure-openai':
      return { 'api-key': key };
    case 'anthropic':
      return { 'x-api-key': key };
    case 'gemini':
      return { 'x-goog-api-key': key };
    default:
      // A kind an adapter declares says where its key goes.
      return adapterOfUpstreamKind(kind)?.upstream?.authHeaders(key) ?? { authorization: `Bearer ${key}` };
  }
}

function upstreamPath(api: ProviderApi): string | undefined {
  // OpenAI base URLs end in /v1 (as the OpenAI SDK's baseURL does); Anthropic's do not (as its SDK's).
  switch (api) {
    case 'openai.chat':
    case 'openai.compatible':
      return '/chat/completions';
    case 'openai.responses':
      return '/responses';
    case 'anthropic.messages':
      return '/v1/messages';
    default:
      // Gemini names the model in its path (built per call); an adapter that declares its upstream gives its path.
      return adapterFor(api).upstream?.path;
  }
}

/** The APIs whose upstream path is fixed. */
const FIXED_PATH_APIS: readonly ProviderApi[] = PROVIDER_APIS.filter((api) => upstreamPath(api) !== undefined);

/** Where a call to `api` goes, split once as undici's dispatch takes it (request() would parse the URL on every call). */
function upstreamTarget(baseUrl: string, api: ProviderApi): { origin: string; path: string } {
  const url = new URL(`${baseUrl}${upstreamPath(api) ?? ''}`);
  return { origin: url.origin, path: `${url.pathname}${url.search}` };
}

/**
 * Gemini's path names the model and the method: built from the call's model (a downgrade may
 * have changed it), with streams asked as SSE, the one stream format the meter reads.
 */
function geminiPath(basePath: string, call: ProviderCall): string {
  const model = encodeURIComponent(call.model!);
  return call.stream
    ? `${basePath}/models/${model}:${GEMINI_STREAM_ACTION}?alt=sse`
    : `${basePath}/models/${model}:generateContent`;
}

/** The upstream's key: its environment variable wins over the config value; read once at start. */
export function resolveUpstreamKey(config: UpstreamConfig, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const fromEnv = config.apiKeyEnv ? env[config.apiKeyEnv] : undefined;
  return fromEnv && fromEnv.length > 0 ? fromEnv : config.apiKey;
}

/**
 * `allKeys`: every upstream key of the gateway, redacted from what this upstream passes on (an
 * upstream may have been handed, or may echo, another one's key).
 * @default this upstream's own key
 * `observe`: told how each call ended (the metrics). @default none
 */
export function createUpstream(
  name: string,
  config: UpstreamConfig,
  env: NodeJS.ProcessEnv = process.env,
  allKeys?: readonly (string | undefined)[],
  observe?: UpstreamObserver,
): Upstream {
  const api = config.api ?? defaultUpstreamKind(name);
  const apiKey = resolveUpstreamKey(config, env);
  // Only the error answers passed on are searched for the key; 2xx streams go through untouched.
  const secrets = secretRedactor(allKeys ?? [apiKey]);
  const dispatcher = new Agent({
    connect: { timeout: config.connectTimeoutMs ?? 10_000 },
    headersTimeout: config.firstByteTimeoutMs ?? 120_000,
    bodyTimeout: config.idleTimeoutMs ?? 120_000,
  });
  const anthropicVersion = config.anthropicVersion ?? DEFAULT_ANTHROPIC_VERSION;

  const targets = new Map(
    FIXED_PATH_APIS.map((providerApi) => [providerApi, upstreamTarget(config.baseUrl, providerApi)]),
  );
  const base = new URL(config.baseUrl);
  const basePath = base.pathname.replace(/\/+$/, '');
  // Azure names the deployment (not the model) in the path, and the API version in the query.
  const azureVersion = encodeURIComponent(config.apiVersion ?? DEFAULT_AZURE_API_VERSION);
  const azurePaths = new Map<string, string>();
  const azurePath = (model: string): string => {
    let path = azurePaths.get(model);
    if (path === undefined) {
      const deployment = config.deployments?.[model] ?? model;
      path = `${basePath}/openai/deployments/${encodeURIComponent(deployment)}/chat/completions?api-version=${azureVersion}`;
      azurePaths.set(model, path);
    }
    return path;
  };
  const destination = (
    providerApi: ProviderApi,
    call: ProviderCall,
    model: string,
  ): { origin: string; path: string } => {
    if (providerApi === 'gemini.generate') return { origin: base.origin, path: geminiPath(basePath, call) };
    if (api === 'azure-openai') return { origin: base.origin, path: azurePath(model) };
    return targets.get(providerApi)!;
  };

  // Built from scratch: nothing of the client's request (its credentials above all) is forwarded by accident.
  const baseHeaders = (stream: boolean): Readonly<Record<string, string>> =>
    Object.freeze({
      'content-type': 'application/json',
      accept: stream ? 'text/event-stream' : 'application/json',
      // Usage is read from the bytes on the way through: they must arrive uncompressed.
      'accept-encoding': 'identity',
      'user-agent': 'tollgate-proxy',
      ...(apiKey ? authHeader(api, apiKey) : {}),
    });
  const jsonHeaders = baseHeaders(false);
  const streamHeaders = baseHeaders(true);

  const buildHeaders = (req: Request | undefined, stream: boolean): Readonly<Record<string, string>> => {
    const headers = stream ? streamHeaders : jsonHeaders;
    if (api !== 'anthropic') return headers;
    // Anthropic's version and beta flags are the client's choice, when well-formed.
    const version = req?.headers['anthropic-version'];
    const beta = req?.headers['anthropic-beta'];
    // Object.assign, not a literal opening with \`...headers\`: properties after a leading spread are slow on Node 20.
    return Object.assign({}, headers, {
      'anthropic-version':
        typeof version === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(version) ? version : anthropicVersion,
      ...(typeof beta === 'string' && /^[\w.,\s-]{1,512}$/.test(beta) ? { 'anthropic-beta': beta } : {}),
    });
  };

  return {
    name,
    api,
    forward(providerApi, req, res, next) {
      const call = req.tollgate.call!;
      const stream = call.stream;
      const { origin, path } = destination(providerApi, call, call.model!);
      const answer = new UpstreamAnswer(name, stream, res, next, secrets, stream ? call.signal : undefined, observe);
      // From here on the provider may bill the call: noted first (the usage spool), so that a crash still charges it.
      req.tollgate.markSending();
      dispatcher.dispatch(
        { origin, path, method: 'POST', headers: buildHeaders(req, stream), body: JSON.stringify(call.body) },
        answer,
      );
    },
    send(targetApi, model, body, req, res, next, routed) {
      const call = req.tollgate.call!;
      const stream = call.stream;
      const { origin, path } = destination(targetApi, call, model);
      const answer = new UpstreamAnswer(
        name,
        stream,
        res,
        next,
        secrets,
        stream ? call.signal : undefined,
        observe,
        routed,
      );
      req.tollgate.markSending();
      dispatcher.dispatch(
        { origin, path, method: 'POST', headers: buildHeaders(req, stream), body: JSON.stringify(body) },
        answer,
      );
    },
    forwardCount(countApi, model, req, res, next) {
      const path = `${basePath}${adapterFor(countApi).countTokens!.upstreamPath(encodeURIComponent(model))}`;
      const answer = new UpstreamAnswer(name, false, res, next, secrets, undefined, observe);
      dispatcher.dispatch(
        {
          origin: base.origin,
          path,
          method: 'POST',
          headers: buildHeaders(req, false),
          body: JSON.stringify(req.body),
        },
        answer,
      );
    },
    async probe(timeoutMs) {
      try {
        const answer = await dispatcher.request({
          origin: base.origin,
          path: modelsPath(api, basePath, azureVersion),
          method: 'GET',
          headers: buildHeaders(undefined, false),
          signal: AbortSignal.timeout(timeoutMs),
        });
        await answer.body.dump();
        return answer.statusCode < 300 ? { ok: true } : { ok: false, detail: `HTTP ${answer.statusCode}` };
      } catch (error) {
        return { ok: false, detail: error instanceof Error ? error.message : String(error) };
      }
    },
    async close() {
      const closed = dispatcher.close().catch(() => undefined);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([closed, new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_GRACE_MS)))]);
      clearTimeout(timer);
      // Done already when every call ended; else the rest are cut (their answers fail, and they settle).
      await dispatcher.destroy();
    },
  };
}
