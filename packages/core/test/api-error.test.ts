// Client-facing errors: the OpenAI error shape, statuses and headers, and body-parser errors mapped to them.
import { describe, expect, it } from '@jest/globals';
import express from 'express';
import request from 'supertest';
import { ApiError, apiErrorHandler, getContext, renderApiError, type ApiErrorCode } from '@tollgate/core';
import { toClientError } from '@tollgate/core/checks';

function appThrowing(error: unknown, options?: Parameters<typeof apiErrorHandler>[0]) {
  const app = express();
  app.get('/', () => {
    throw error;
  });
  app.use(apiErrorHandler(options));
  return app;
}

describe('ApiError', () => {
  it.each<[ApiErrorCode, number, string]>([
    ['invalid_api_key', 401, 'invalid_request_error'],
    ['insufficient_scope', 403, 'permission_error'],
    ['model_not_allowed', 403, 'permission_error'],
    ['tool_not_allowed', 403, 'permission_error'],
    ['invalid_request', 400, 'invalid_request_error'],
    ['request_too_large', 413, 'invalid_request_error'],
    ['rate_limit_exceeded', 429, 'requests'],
    ['tokens_rate_limit_exceeded', 429, 'tokens'],
    ['insufficient_quota', 429, 'insufficient_quota'],
    ['service_unavailable', 503, 'server_error'],
    ['upstream_error', 502, 'server_error'],
    ['upstream_timeout', 504, 'server_error'],
  ])('%s is %i / %s', (code, status, type) => {
    const error = new ApiError(code, 'msg');
    expect(error.status).toBe(status);
    expect(error.toJSON()).toEqual({ error: { message: 'msg', type, code, param: null } });
  });

  it('lets the status be overridden and keeps param', () => {
    const error = new ApiError('invalid_request', 'bad', { status: 422, param: 'messages' });
    expect(error.status).toBe(422);
    expect(error.toJSON().error.param).toBe('messages');
  });
});

describe('renderApiError', () => {
  it('renders the JSON shape with status and headers', async () => {
    const error = new ApiError('rate_limit_exceeded', 'Slow down.', {
      headers: { 'Retry-After': 7, RateLimit: 'limit=10, remaining=0, reset=7' },
    });
    const response = await request(appThrowing(error)).get('/');
    expect(response.status).toBe(429);
    expect(response.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(response.headers['retry-after']).toBe('7');
    expect(response.headers['ratelimit']).toBe('limit=10, remaining=0, reset=7');
    expect(response.headers['x-should-retry']).toBeUndefined();
    expect(response.body).toEqual({
      error: { message: 'Slow down.', type: 'requests', code: 'rate_limit_exceeded', param: null },
    });
  });

  it('tells SDKs not to retry an exhausted budget', async () => {
    const response = await request(
      appThrowing(new ApiError('insufficient_quota', 'Budget tenant:acme exhausted.')),
    ).get('/');
    expect(response.status).toBe(429);
    expect(response.headers['x-should-retry']).toBe('false');
    expect(response.body.error.type).toBe('insufficient_quota');
  });

  it('sends WWW-Authenticate for missing credentials when given', async () => {
    const response = await request(
      appThrowing(new ApiError('invalid_api_key', 'No key.', { headers: { 'WWW-Authenticate': 'Bearer' } })),
    ).get('/');
    expect(response.status).toBe(401);
    expect(response.headers['www-authenticate']).toBe('Bearer');
  });

  it('cuts a response whose headers were already sent', async () => {
    const app = express();
    app.get('/', (req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: one\n\n');
      setImmediate(() => renderApiError(new ApiError('upstream_error', 'gone'), req, res));
    });
    await expect(request(app).get('/')).rejects.toThrow();
  });

  it("hands the refusal to the renderer the request's route set on its context", async () => {
    const app = express();
    app.get('/', (req, res, next) => {
      getContext(req, res).renderError = (error, _req, out) => {
        out.statusCode = 200;
        out.end(`json-rpc:${error.code}`);
      };
      next(new ApiError('tool_not_allowed', 'no'));
    });
    app.use(apiErrorHandler());
    const response = await request(app).get('/');
    expect([response.status, response.text]).toEqual([200, 'json-rpc:tool_not_allowed']);
  });

  it('can be replaced by a custom renderer', async () => {
    const response = await request(
      appThrowing(new ApiError('invalid_request', 'nope'), {
        renderError: (error, _req, res) => {
          res.statusCode = error.status;
          res.end(`custom:${error.code}`);
        },
      }),
    ).get('/');
    expect(response.status).toBe(400);
    expect(response.text).toBe('custom:invalid_request');
  });
});

describe('toClientError', () => {
  it.each([
    [{ type: 'entity.too.large', status: 413 }, 413, 'request_too_large', null],
    [{ type: 'entity.parse.failed', status: 400 }, 400, 'invalid_request', 'body'],
    [{ type: 'encoding.unsupported', status: 415 }, 400, 'invalid_request', 'body'],
    [{ type: 'charset.unsupported', status: 415 }, 400, 'invalid_request', 'body'],
    [{ type: 'request.aborted', status: 400 }, 400, 'invalid_request', 'body'],
    [{ status: 405, expose: true }, 405, 'invalid_request', null],
  ])('maps %j', (input, status, code, param) => {
    const error = toClientError(input);
    expect(error).toBeInstanceOf(ApiError);
    expect(error).toMatchObject({ status, code, param });
  });

  it('passes ApiErrors through unchanged', () => {
    const error = new ApiError('not_found', 'x');
    expect(toClientError(error)).toBe(error);
  });

  it.each([
    [new Error('bug')],
    [{ status: 500, expose: false }],
    [{ status: 404, expose: false }],
    ['text'],
    [null],
    [undefined],
  ])('leaves %p to the app', (input) => {
    expect(toClientError(input)).toBeUndefined();
  });
});

describe('apiErrorHandler with express.json', () => {
  const app = express();
  app.post('/', express.json({ limit: '1kb' }), (req, res) => void res.json({ got: req.body }));
  app.get('/bug', () => {
    throw new Error('a real bug');
  });
  app.use(apiErrorHandler());
  // Whatever the handler passes on reaches Express's own final handler (a 500).

  it('answers malformed JSON with 400 invalid_request naming the body', async () => {
    const response = await request(app).post('/').set('content-type', 'application/json').send('{"model": ');
    expect(response.status).toBe(400);
    expect(response.body).toEqual({
      error: {
        message: 'Request body is not valid JSON.',
        type: 'invalid_request_error',
        code: 'invalid_request',
        param: 'body',
      },
    });
  });

  it('answers a too-large body with 413 request_too_large', async () => {
    const response = await request(app)
      .post('/')
      .set('content-type', 'application/json')
      .send(JSON.stringify({ text: 'x'.repeat(4096) }));
    expect(response.status).toBe(413);
    expect(response.body.error.code).toBe('request_too_large');
  });

  it('answers an unsupported charset with 400', async () => {
    const response = await request(app).post('/').set('content-type', 'application/json; charset=klingon').send('{}');
    expect(response.status).toBe(400);
    expect(response.body.error.code).toBe('invalid_request');
  });

  it('passes real bugs on to the app', async () => {
    const response = await request(app).get('/bug');
    expect(response.status).toBe(500);
    expect(response.body.error).toBeUndefined();
  });
});
