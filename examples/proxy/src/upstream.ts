// Forwards a (validated, metered) request to a real provider with undici and streams the answer back unbuffered.
import { Agent } from 'undici';
import type { NextFunction, Request, Response } from 'express';
import type { ProviderApi } from '@tollgate/core';
import type { UpstreamConfig } from './config.js';
import { UpstreamAnswer } from './upstream-answer.js';

const DEFAULT_ANTHROPIC_VERSION = '2023-06-01';
const PROVIDER_APIS: readonly ProviderApi[] = ['openai.chat', 'openai.responses', 'anthropic.messages'];

export interface Upstream {
  readonly name: string;
  readonly api: 'openai' | 'anthropic';
  /** Sends the request's body (as the chain left it) to the provider and streams the answer to `res`; failures reach `next`. */
  forward(api: ProviderApi, req: Request, res: Response, next: NextFunction): void;
  close(): Promise<void>;
}

function upstreamPath(api: ProviderApi): string {
  // OpenAI base URLs end in /v1 (as the OpenAI SDK's baseURL does); Anthropic's do not (as its SDK's).
  switch (api) {
    case 'openai.chat':
      return '/chat/completions';
    case 'openai.responses':
      return '/responses';
    case 'anthropic.messages':
      return '/v1/messages';
  }
}

/** Where a call to `api` goes, split once as undici's dispatch takes it (request() would parse the URL on every call). */
function upstreamTarget(baseUrl: string, api: ProviderApi): { origin: string; path: string } {
  const url = new URL(`${baseUrl}${upstreamPath(api)}`);
  return { origin: url.origin, path: `${url.pathname}${url.search}` };
}

/** The upstream's key: its environment variable wins over the config value; read once at start. */
export function resolveUpstreamKey(config: UpstreamConfig, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const fromEnv = config.apiKeyEnv ? env[config.apiKeyEnv] : undefined;
  return fromEnv && fromEnv.length > 0 ? fromEnv : config.apiKey;
}

export function createUpstream(name: string, config: UpstreamConfig, env: NodeJS.ProcessEnv = process.env): Upstream {
  const api = config.api ?? (name === 'anthropic' ? 'anthropic' : 'openai');
  const apiKey = resolveUpstreamKey(config, env);
  const dispatcher = new Agent({
    connect: { timeout: config.connectTimeoutMs ?? 10_000 },
    headersTimeout: config.firstByteTimeoutMs ?? 120_000,
    bodyTimeout: config.idleTimeoutMs ?? 120_000,
  });
  const anthropicVersion = config.anthropicVersion ?? DEFAULT_ANTHROPIC_VERSION;

  const targets = new Map(PROVIDER_APIS.map((providerApi) => [providerApi, upstreamTarget(config.baseUrl, providerApi)]));

  // Built from scratch: nothing of the client's request (its credentials above all) is forwarded by accident.
  const baseHeaders = (stream: boolean): Readonly<Record<string, string>> => Object.freeze({
    'content-type': 'application/json',
    accept: stream ? 'text/event-stream' : 'application/json',
    // Usage is read from the bytes on the way through: they must arrive uncompressed.
    'accept-encoding': 'identity',
    'user-agent': 'tollgate-proxy',
    ...(api === 'openai' && apiKey ? { authorization: `Bearer ${apiKey}` } : {}),
    ...(api === 'anthropic' && apiKey ? { 'x-api-key': apiKey } : {}),
  });
  const jsonHeaders = baseHeaders(false);
  const streamHeaders = baseHeaders(true);

  const buildHeaders = (req: Request, stream: boolean): Readonly<Record<string, string>> => {
    const headers = stream ? streamHeaders : jsonHeaders;
    if (api !== 'anthropic') return headers;
    // Anthropic's version and beta flags are the client's choice, when well-formed.
    const version = req.headers['anthropic-version'];
    const beta = req.headers['anthropic-beta'];
    // Object.assign, not a literal opening with \`...headers\`: properties after a leading spread are slow on Node 20.
    return Object.assign({}, headers, {
      'anthropic-version': typeof version === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(version) ? version : anthropicVersion,
      ...(typeof beta === 'string' && /^[\w.,\s-]{1,512}$/.test(beta) ? { 'anthropic-beta': beta } : {}),
    });
  };

  return {
    name,
    api,
    forward(providerApi, req, res, next) {
      const body = req.body as Record<string, unknown>;
      const stream = body.stream === true;
      const { origin, path } = targets.get(providerApi)!;
      dispatcher.dispatch(
        { origin, path, method: 'POST', headers: buildHeaders(req, stream), body: JSON.stringify(body) },
        new UpstreamAnswer(name, stream, res, next),
      );
    },
    close: () => dispatcher.close(),
  };
}
