// A budgeted chat route for the rebuild tests: the caller from headers, metered into a sink, answered with usage.
import express from 'express';
import type { Express, RequestHandler } from 'express';
import { apiErrorHandler, getContext } from '@tollgate/core';
import type { Pricing } from '@tollgate/core';
import { meter } from '@tollgate/metering';
import type { UsageSink } from '@tollgate/metering';

/**
 * The caller's tenant (default acme), key, end user, tier and tags (comma-separated) from headers (auth is not what
 * these tests are about).
 */
const identify: RequestHandler = (req, res, next) => {
  getContext(req, res).identity = {
    keyId: String(req.headers['x-key']),
    tenantId: String(req.headers['x-tenant'] ?? 'acme'),
    ...(req.headers['x-user'] ? { userId: String(req.headers['x-user']) } : {}),
    ...(req.headers['x-tier'] ? { tier: String(req.headers['x-tier']) } : {}),
    ...(req.headers['x-tags'] ? { tags: String(req.headers['x-tags']).split(',') } : {}),
    scopes: [],
    authMethod: 'api_key',
  };
  next();
};

/**
 * POST /v1/chat/completions through `guard`, answered (once `before` resolves) with 1,000 input tokens and
 * `max_tokens` output tokens of the model asked for.
 */
export function budgetApp(
  pricing: Pricing,
  sink: UsageSink,
  guard: RequestHandler,
  before: (req: express.Request) => Promise<void> = async () => undefined,
): Express {
  const app = express();
  app.use(express.json());
  app.post(
    '/v1/chat/completions',
    identify,
    meter({ api: 'openai.chat', pricing, sinks: [sink] }),
    guard,
    async (req, res) => {
      await before(req);
      res.json({
        model: req.body.model as string,
        choices: [],
        usage: { prompt_tokens: 1_000, completion_tokens: req.body.max_tokens as number },
      });
    },
  );
  app.use(apiErrorHandler());
  return app;
}
