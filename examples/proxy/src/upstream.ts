// Forwards a (validated, metered) request to a real provider with undici and streams the answer back unbuffered.
import { pipeline } from 'node:stream/promises';
import { Agent, request } from 'undici';
import type { Dispatcher } from 'undici';
import type { NextFunction, Request, Response } from 'express';
import { ApiError } from '@tollgate/core';
import type { ProviderApi } from '@tollgate/core';
import type { UpstreamConfig } from './config.js';

const DEFAULT_ANTHROPIC_VERSION = '2023-06-01';
/** Upstream error bodies passed to the client are capped: they are small JSON documents. */
const MAX_ERROR_BODY_BYTES = 64 * 1024;
const PASSED_THROUGH_HEADERS = ['retry-after', 'retry-after-ms', 'x-should-retry'] as const;

export interface Upstream {
  readonly name: string;
  readonly api: 'openai' | 'anthropic';
  /** Sends the request's body (as the chain left it) to the provider and streams the answer to `res`. */
  forward(api: ProviderApi, req: Request, res: Response, next: NextFunction): Promise<void>;
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

function isTimeout(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT';
}

async function readCapped(body: Dispatcher.ResponseData['body']): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const buffer = chunk as Buffer;
    size += buffer.length;
    if (size > MAX_ERROR_BODY_BYTES) {
      body.destroy();
      break;
    }
    chunks.push(buffer);
  }
  return Buffer.concat(chunks);
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

  const buildHeaders = (req: Request, stream: boolean): Record<string, string> => {
    // Built from scratch: nothing of the client's request (its credentials above all) is forwarded by accident.
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      accept: stream ? 'text/event-stream' : 'application/json',
      // Usage is read from the bytes on the way through: they must arrive uncompressed.
      'accept-encoding': 'identity',
      'user-agent': 'tollgate-proxy',
    };
    if (api === 'anthropic') {
      const version = req.headers['anthropic-version'];
      headers['anthropic-version'] = typeof version === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(version) ? version : anthropicVersion;
      const beta = req.headers['anthropic-beta'];
      if (typeof beta === 'string' && /^[\w.,\s-]{1,512}$/.test(beta)) headers['anthropic-beta'] = beta;
      if (apiKey) headers['x-api-key'] = apiKey;
    } else if (apiKey) {
      headers.authorization = `Bearer ${apiKey}`;
    }
    return headers;
  };

  return {
    name,
    api,
    async forward(providerApi, req, res, next) {
      const body = req.body as Record<string, unknown>;
      const stream = body.stream === true;
      const abort = new AbortController();
      const onClientGone = () => {
        if (!res.writableFinished) abort.abort();
      };
      res.once('close', onClientGone);

      let answer: Dispatcher.ResponseData;
      try {
        answer = await request(`${config.baseUrl}${upstreamPath(providerApi)}`, {
          method: 'POST',
          headers: buildHeaders(req, stream),
          body: JSON.stringify(body),
          dispatcher,
          signal: abort.signal,
        });
      } catch (error) {
        res.off('close', onClientGone);
        if (abort.signal.aborted) return; // the client left; its response is already closed
        next(isTimeout(error)
          ? new ApiError('upstream_timeout', `The ${name} upstream did not answer in time.`, { cause: error })
          : new ApiError('upstream_error', `The ${name} upstream could not be reached.`, { cause: error }));
        return;
      }

      const { statusCode, headers } = answer;
      try {
        if (statusCode >= 500 || (statusCode >= 300 && statusCode < 400) || statusCode < 200) {
          // A provider API never redirects: a 3xx is as much a failure as a 5xx.
          answer.body.dump().catch(() => undefined);
          next(new ApiError('upstream_error', `The ${name} upstream failed (HTTP ${statusCode}).`));
          return;
        }
        if (statusCode === 401 || statusCode === 403 || statusCode === 407) {
          // The upstream refused the gateway's own credentials: not the client's fault, and its body
          // may name the gateway's key (OpenAI shows it masked but for its ends), so none of it is passed on.
          answer.body.dump().catch(() => undefined);
          next(new ApiError('upstream_error', `The ${name} upstream refused the gateway's credentials (HTTP ${statusCode}).`));
          return;
        }
        if (statusCode >= 400) {
          // Other 4xx (429 included) reach the client as the provider wrote them, with their retry hints.
          const bytes = await readCapped(answer.body);
          for (const header of PASSED_THROUGH_HEADERS) {
            const value = headers[header];
            if (typeof value === 'string') res.setHeader(header, value);
          }
          const contentType = headers['content-type'];
          res.status(statusCode);
          res.setHeader('content-type', typeof contentType === 'string' ? contentType : 'application/json');
          res.end(bytes);
          return;
        }
        res.status(statusCode);
        const contentType = headers['content-type'];
        res.setHeader('content-type', typeof contentType === 'string' ? contentType : stream ? 'text/event-stream' : 'application/json');
        if (stream) res.setHeader('cache-control', 'no-cache');
        res.flushHeaders();
        // pipeline cuts the client's response if the upstream stalls (idle timeout) or fails mid-body,
        // and stops reading the upstream if the client leaves: every path ends the response.
        await pipeline(answer.body, res);
      } catch (error) {
        if (!res.headersSent) {
          next(isTimeout(error)
            ? new ApiError('upstream_timeout', `The ${name} upstream stopped answering.`, { cause: error })
            : new ApiError('upstream_error', `The ${name} upstream failed mid-answer.`, { cause: error }));
        } else if (!res.destroyed) {
          res.destroy();
        }
      } finally {
        res.off('close', onClientGone);
      }
    },
    close: () => dispatcher.close(),
  };
}
