// `POST /v1/realtime/client_secrets` (and the beta's `/v1/realtime/sessions`): an ephemeral key minted by the upstream
// only once the caller's budgets can hold one response at its cap (docs/realtime.md). The session a client opens with
// it directly at OpenAI is not the gateway's to meter; the docs say so.
import type { Request, Response } from 'express';
import { ApiError, renderApiError } from '@tollgate/core';
import type { ResolvedPrice } from '@tollgate/core/costs';
import type { MeteredRealtimeResponse, RealtimeResponseAsk } from '@tollgate/metering';
import { realtimeOutputCap } from '@tollgate/providers/routes';
import type { ProviderRouter, RealtimeUpstream } from '@tollgate/router/upstreams';
import { ZERO_USAGE } from './realtime-turn.js';
import type { RealtimeResponseStages } from './routes.js';

/** Where clients mint ephemeral keys for a browser's session: OpenAI's GA path and its beta's (docs/realtime.md). */
export const CLIENT_SECRET_PATHS = ['/v1/realtime/client_secrets', '/v1/realtime/sessions'] as const;
/** The longest life of a minted secret, in seconds: OpenAI's default (600); a request for longer is shortened. */
const SECRET_MAX_SECONDS = 600;

/** The stages of a mint: its caller's budgets hold one response at its cap as the check, then the upstream mints. */
export function clientSecretStages(options: {
  providers: Pick<ProviderRouter, 'realtimeUpstream'>;
  priceOf: (model: string) => ResolvedPrice | undefined;
  charge: (req: Request, res: Response, ask: RealtimeResponseAsk) => MeteredRealtimeResponse;
}): RealtimeResponseStages {
  const charges = new WeakMap<Request, MeteredRealtimeResponse>();
  /** The upstream each mint goes to. */
  const mints = new WeakMap<Request, RealtimeUpstream>();
  return {
    match: (_req, _res, next) => next(),
    charge(req, res, next) {
      const body = (req.body ?? {}) as Record<string, unknown>;
      const session = (typeof body.session === 'object' && body.session !== null ? body.session : body) as Record<
        string,
        unknown
      >;
      const model = typeof session.model === 'string' ? session.model : undefined;
      const price = model === undefined ? undefined : options.priceOf(model);
      const target = model === undefined ? undefined : options.providers.realtimeUpstream(model);
      if (!model || !price || !target) {
        const named = model === undefined ? 'no model' : `"${model.slice(0, 100)}"`;
        const message = `Name a Realtime model an upstream serves in session.model; got ${named}.`;
        renderApiError(new ApiError('invalid_request', message, { param: 'session.model' }), req, res);
        return;
      }
      const ask = { model, price, inputTokens: 0, maxOutputTokens: realtimeOutputCap(session, undefined) };
      charges.set(req, options.charge(req, res, ask));
      mints.set(req, target);
      next();
    },
    call(req, res, next) {
      const finish = charges.get(req)?.start();
      if (!finish) {
        res.status(499).end();
        return;
      }
      const body = { ...(req.body as Record<string, unknown>) };
      const asked = (body.expires_after as { seconds?: unknown } | undefined)?.seconds;
      const seconds = typeof asked === 'number' && asked > 0 ? Math.min(asked, SECRET_MAX_SECONDS) : SECRET_MAX_SECONDS;
      if (req.path === CLIENT_SECRET_PATHS[0]) body.expires_after = { anchor: 'created_at', seconds };
      const target = mints.get(req)!;
      req.tollgate.markSending();
      fetch(`${target.baseUrl}${req.path.slice('/v1'.length)}`, {
        method: 'POST',
        headers: { ...target.headers, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      })
        .then(async (answer) => {
          const text = await answer.text();
          // The mint costs nothing: the record says it happened, at 0.
          finish({ usage: { ...ZERO_USAGE }, status: answer.status });
          res.status(answer.status).type('application/json').send(text);
        })
        .catch((error: unknown) => {
          finish({ usage: { ...ZERO_USAGE }, status: 502 });
          next(new ApiError('upstream_error', `The upstream did not mint the secret: ${(error as Error).message}`));
        });
    },
  };
}
