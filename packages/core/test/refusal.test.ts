// A rendered refusal is noted on the request's context with the layer that refused: by code, by the error, or by the renderer.
import { describe, expect, it } from '@jest/globals';
import express from 'express';
import type { Request, Response } from 'express';
import request from 'supertest';
import { ApiError, refusalRenderer, renderApiError, type ApiErrorCode } from '@tollgate/core';
import { noteRefusal } from '@tollgate/core/checks';
import type { Refusal, RefusalLayer } from '../src/api-error.js';

/** Renders `error` with `render` and hands back what the context noted once the response closed. */
async function refusalOf(
  error: ApiError,
  render = renderApiError,
): Promise<{ status: number; refusal: Refusal | undefined }> {
  let noted: Refusal | undefined;
  const app = express();
  app.get('/', (req: Request, res: Response) => {
    res.on('close', () => (noted = req.tollgate.refusal));
    render(error, req, res);
  });
  const response = await request(app).get('/');
  return { status: response.status, refusal: noted };
}

describe('refusals on the context', () => {
  it.each<[ApiErrorCode, RefusalLayer]>([
    ['invalid_api_key', 'auth'],
    ['insufficient_scope', 'scope'],
    ['model_not_allowed', 'model'],
    ['invalid_request', 'request'],
    ['rate_limit_exceeded', 'requests'],
    ['tokens_rate_limit_exceeded', 'tokens'],
    ['insufficient_quota', 'budget'],
    ['service_unavailable', 'store'],
    ['upstream_error', 'upstream'],
    ['not_found', 'route'],
  ])('renderApiError notes %s as refused by %s', async (code, layer) => {
    const { status, refusal } = await refusalOf(new ApiError(code, 'why'));
    expect(refusal).toEqual({ layer, code, status, message: 'why' });
  });

  it('keeps the layer an error names, and its cause for the operator', async () => {
    const cause = new Error('connect ECONNREFUSED 127.0.0.1:6379');
    const { refusal } = await refusalOf(new ApiError('service_unavailable', 'try later', { layer: 'budget', cause }));
    expect(refusal).toMatchObject({ layer: 'budget', code: 'service_unavailable', status: 503 });
    expect(refusal!.cause).toBe(cause);
  });

  it('refusalRenderer names its layer where the code does not tell (a concurrency 429 shares the request limit code)', async () => {
    const { status, refusal } = await refusalOf(
      new ApiError('rate_limit_exceeded', 'Too many concurrent requests.'),
      refusalRenderer('concurrency'),
    );
    expect(status).toBe(429);
    expect(refusal).toMatchObject({ layer: 'concurrency', code: 'rate_limit_exceeded' });
  });

  it('refusalRenderer notes the refusal even around a renderer of your own that does not', async () => {
    const plain = (error: ApiError, _req: unknown, res: import('node:http').ServerResponse) => {
      res.statusCode = error.status;
      res.end('no');
    };
    const { status, refusal } = await refusalOf(
      new ApiError('insufficient_quota', 'spent'),
      refusalRenderer('budget', plain),
    );
    expect(status).toBe(429);
    expect(refusal).toMatchObject({ layer: 'budget', code: 'insufficient_quota', message: 'spent' });
  });

  it('noteRefusal is what a renderer of your own calls', async () => {
    const own = (
      error: ApiError,
      req: import('node:http').IncomingMessage,
      res: import('node:http').ServerResponse,
    ) => {
      noteRefusal(req, res, error, 'guard');
      res.statusCode = 403;
      res.end();
    };
    const { refusal } = await refusalOf(new ApiError('insufficient_scope', 'suspended'), own);
    expect(refusal).toMatchObject({ layer: 'guard', code: 'insufficient_scope', status: 403 });
  });
});
