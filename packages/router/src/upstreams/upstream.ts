// Forwards a (validated, metered) request to a real provider with undici and streams the answer back unbuffered.
import { Agent } from 'undici';
import type { NextFunction, Request, Response } from 'express';
import type { ProviderApi } from '@tollgate/core';
import { adapterFor } from '@tollgate/providers';
import { answerFormsOf } from '@tollgate/providers/answers';
import { withFormFields } from '@tollgate/providers/routes';
import type { UpstreamOptions } from './routing-config.js';
import { secretRedactor } from './redact.js';
import { UpstreamAnswer } from './upstream-answer.js';
import { upstreamRequests } from './upstream-wire.js';
import { DEFAULT_COUNT_TIMEOUT_MS, outputCounts } from './upstream-count.js';
import type { RoutedTry, UpstreamObserver } from './upstream-outcome.js';

/**
 * At close, how long calls still running (answers read for their usage after the client left) get
 * before they are cut: a call cut then is charged its reservation's bound.
 */
const CLOSE_GRACE_MS = 2000;

export interface Upstream {
  readonly name: string;
  readonly api: string;
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
  /**
   * The active health check: lists the upstream's models (no tokens spent), or with `model` its kind's one-token call
   * (paid); ok when it answers 2xx in time. `ms`: how long it took.
   */
  probe(timeoutMs: number, model?: string): Promise<ProbeResult>;
  /** Waits for the calls still running, a short grace at most, then cuts them. */
  close(): Promise<void>;
}

/** How one health probe of an upstream ended. */
export interface ProbeResult {
  ok: boolean;
  ms: number;
  detail?: string;
}

/**
 * The body a call goes upstream with, and whether it is asked as a stream: a stream as it is; a metered JSON call as a
 * stream too when the target's API streams (`streamRequest`) and the client's answers assemble from one, so that the
 * meter holds it to its grant (docs/architecture.md, "What a JSON answer can spend"); else as it is.
 */
function upstreamBody(
  req: Request,
  clientApi: ProviderApi,
  targetApi: ProviderApi,
  body: Record<string, unknown>,
  jsonAsStream: boolean,
): { body: Record<string, unknown>; stream: boolean } {
  const ctx = req.tollgate;
  const call = ctx.call!;
  if (call.stream) return { body, stream: true };
  const streamRequest = adapterFor(targetApi).streamRequest;
  // Set on each try: a routed request's next target may not stream.
  call.jsonFromStream =
    jsonAsStream &&
    ctx.metered &&
    streamRequest !== undefined &&
    answerFormsOf(adapterFor(clientApi).family)?.fromEvents !== undefined;
  return call.jsonFromStream ? { body: streamRequest!(body), stream: true } : { body, stream: false };
}

/**
 * What goes upstream for a call of `api` run with `model`: its JSON body, or for an API that takes uploads the form
 * the client sent, byte for byte, but for the text fields the chain changed (a downgrade's model, a masked prompt).
 */
function wirePayload(
  req: Request,
  api: ProviderApi,
  model: string,
  body: Record<string, unknown>,
  headers: Readonly<Record<string, string>>,
): { body: string | Buffer; headers: Readonly<Record<string, string>> } {
  const form = adapterFor(api).requestForm === 'multipart' ? req.tollgate.get('providers.uploadForm') : undefined;
  if (form === undefined) return { body: JSON.stringify(body), headers };
  const fields: Record<string, string> = {};
  for (const [name, value] of Object.entries(body)) if (typeof value === 'string') fields[name] = value;
  fields.model = model;
  return { body: withFormFields(form, fields), headers: { ...headers, 'content-type': form.contentType } };
}

/** The upstream's key: its environment variable wins over the config value; read once at start. */
export function resolveUpstreamKey(config: UpstreamOptions, env: NodeJS.ProcessEnv = process.env): string | undefined {
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
  config: UpstreamOptions,
  env: NodeJS.ProcessEnv = process.env,
  allKeys?: readonly (string | undefined)[],
  observe?: UpstreamObserver,
): Upstream {
  const { api } = config;
  const apiKey = resolveUpstreamKey(config, env);
  // Only the error answers passed on are searched for the key; 2xx streams go through untouched.
  const secrets = secretRedactor(allKeys ?? [apiKey]);
  const dispatcher = new Agent({
    connect: { timeout: config.connectTimeoutMs ?? 10_000 },
    headersTimeout: config.firstByteTimeoutMs ?? 120_000,
    bodyTimeout: config.idleTimeoutMs ?? 120_000,
  });
  const requests = upstreamRequests(api, config.baseUrl, config, apiKey);
  const jsonAsStream = config.jsonAsStream !== false;
  const counts =
    config.countCutAnswers === false
      ? undefined
      : outputCounts(dispatcher, requests, config.countTimeoutMs ?? DEFAULT_COUNT_TIMEOUT_MS);

  return {
    name,
    api,
    forward(providerApi, req, res, next) {
      const call = req.tollgate.call!;
      const { body, stream } = upstreamBody(req, providerApi, providerApi, call.body, jsonAsStream);
      const { origin, path } = requests.destination(providerApi, call.model!, stream);
      const answer = new UpstreamAnswer(name, stream, res, next, secrets, stream ? call.signal : undefined, observe);
      call.countOutputTokens = counts?.of(providerApi, call.model!);
      // From here on the provider may bill the call: noted first (the usage spool), so that a crash still charges it.
      req.tollgate.markSending();
      const payload = wirePayload(req, providerApi, call.model!, body, requests.headers(req.headers, stream));
      dispatcher.dispatch({ origin, path, method: 'POST', ...payload }, answer);
    },
    send(targetApi, model, translated, req, res, next, routed) {
      const call = req.tollgate.call!;
      const { body, stream } = upstreamBody(req, call.api, targetApi, translated, jsonAsStream);
      const { origin, path } = requests.destination(targetApi, model, stream);
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
      // Set on each try: a routed request's next target may not count.
      call.countOutputTokens = counts?.of(targetApi, model);
      req.tollgate.markSending();
      const payload = wirePayload(req, targetApi, model, body, requests.headers(req.headers, stream));
      dispatcher.dispatch({ origin, path, method: 'POST', ...payload }, answer);
    },
    forwardCount(countApi, model, req, res, next) {
      const { origin, path } = requests.countDestination(countApi, model);
      const answer = new UpstreamAnswer(name, false, res, next, secrets, undefined, observe);
      dispatcher.dispatch(
        { origin, path, method: 'POST', headers: requests.headers(req.headers, false), body: JSON.stringify(req.body) },
        answer,
      );
    },
    async probe(timeoutMs, model) {
      const started = performance.now();
      const call = model === undefined ? undefined : requests.oneTokenCall(model);
      if (model !== undefined && !call)
        return { ok: false, ms: 0, detail: `the ${api} upstream kind declares no one-token call` };
      try {
        const answer = await dispatcher.request({
          ...(call ?? requests.models),
          method: call ? 'POST' : 'GET',
          headers: requests.headers(undefined, false),
          signal: AbortSignal.timeout(timeoutMs),
        });
        await answer.body.dump();
        const ms = performance.now() - started;
        return answer.statusCode < 300 ? { ok: true, ms } : { ok: false, ms, detail: `HTTP ${answer.statusCode}` };
      } catch (error) {
        return {
          ok: false,
          ms: performance.now() - started,
          detail: error instanceof Error ? error.message : String(error),
        };
      }
    },
    async close() {
      const closed = Promise.all([dispatcher.close().catch(() => undefined), counts?.idle()]);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([closed, new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_GRACE_MS)))]);
      clearTimeout(timer);
      counts?.stop();
      // Done already when every call ended; else the rest are cut (their answers fail, and they settle).
      await dispatcher.destroy();
    },
  };
}
