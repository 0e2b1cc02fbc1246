// Errors reach the client as OpenAI-shaped JSON on Express 4 and Express 5, from sync and async handlers, never as Express's HTML page.
import { describe, expect, it } from '@jest/globals';
import express5 from 'express';
import express4 from 'express4';
import type { NextFunction, Request, Response } from 'express';
import request from 'supertest';
import { ApiError, apiErrorHandler } from '@tollgate/core';

type ExpressFactory = typeof express5;

/** The pattern the READMEs give for async routes: every await inside try, failures to next(). */
function appOn(express: ExpressFactory, told: unknown[]) {
  const app = express();
  app.use(express.json());
  app.post('/json', (req: Request, res: Response) => void res.json({ echoed: req.body as unknown }));
  app.get('/sync-bug', () => {
    throw new Error('a bug with a secret stack');
  });
  app.get('/async-upstream', async (_req: Request, _res: Response, next: NextFunction) => {
    try {
      await Promise.reject(new ApiError('upstream_error', 'The provider did not answer.'));
    } catch (error) {
      next(error);
    }
  });
  app.get('/async-bug', async (_req: Request, _res: Response, next: NextFunction) => {
    try {
      await Promise.reject(new TypeError('undefined is not a function'));
    } catch (error) {
      next(error);
    }
  });
  app.use(apiErrorHandler({ otherErrors: (error) => told.push(error) }));
  return app;
}

describe.each([
  ['Express 4', express4 as unknown as ExpressFactory],
  ['Express 5', express5],
])('apiErrorHandler({ otherErrors }) on %s', (_name, express) => {
  it('renders a bad JSON body as 400 invalid_request', async () => {
    const response = await request(appOn(express, []))
      .post('/json')
      .set('content-type', 'application/json')
      .send('{"model":');
    expect(response.status).toBe(400);
    expect(response.body.error).toMatchObject({ code: 'invalid_request', type: 'invalid_request_error' });
  });

  it('renders an ApiError from an async handler in its own status and code', async () => {
    const response = await request(appOn(express, [])).get('/async-upstream');
    expect(response.status).toBe(502);
    expect(response.body).toEqual({
      error: { message: 'The provider did not answer.', type: 'server_error', code: 'upstream_error', param: null },
    });
  });

  it('renders any other error, sync or async, as a 500 internal_error without its stack, and reports it', async () => {
    const told: unknown[] = [];
    const app = appOn(express, told);
    for (const path of ['/sync-bug', '/async-bug']) {
      const response = await request(app).get(path);
      expect(response.status).toBe(500);
      expect(response.headers['content-type']).toMatch(/^application\/json/);
      expect(response.body).toEqual({
        error: {
          message: 'The server failed to answer this request.',
          type: 'server_error',
          code: 'internal_error',
          param: null,
        },
      });
      expect(response.text).not.toMatch(/secret stack|TypeError|at /);
    }
    expect(told.map((error) => (error as Error).message)).toEqual([
      'a bug with a secret stack',
      'undefined is not a function',
    ]);
  });
});

describe('apiErrorHandler() by default', () => {
  it('passes other errors on to the app’s own handler', async () => {
    const app = express5();
    app.get('/', () => {
      throw new Error('bug');
    });
    app.use(apiErrorHandler());
    app.use(
      (error: Error, _req: Request, res: Response, _next: NextFunction) =>
        void res.status(500).json({ own: error.message }),
    );
    expect((await request(app).get('/')).body).toEqual({ own: 'bug' });
  });
});
