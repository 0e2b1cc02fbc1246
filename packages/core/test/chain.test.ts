// chain(): several middlewares as one layer, with the order, early answers and error paths of separate layers, on Express 4 and 5.
import { describe, expect, it } from '@jest/globals';
import express5 from 'express';
import express4 from 'express4';
import type { NextFunction, Request, Response } from 'express';
import request from 'supertest';
import { apiErrorHandler, chain, TollgateError } from '@tollgate/core';
import type { ChainedMiddleware } from '../src/chain.js';

type ExpressFactory = typeof express5;

/** A middleware that notes its name on the request and hands it on. */
function note(name: string) {
  return (req: Request, _res: Response, next: NextFunction) => {
    ((req as unknown as { seen: string[] }).seen ??= []).push(name);
    next();
  };
}

function seenBy(req: Request): string[] {
  return (req as unknown as { seen?: string[] }).seen ?? [];
}

describe.each([
  ['Express 4', express4 as unknown as ExpressFactory],
  ['Express 5', express5],
])('chain() on %s', (_name, express) => {
  function appWith(...middlewares: ChainedMiddleware<Request, Response>[]) {
    const told: unknown[] = [];
    const app = express();
    app.use(chain(...middlewares));
    app.get('/', (req: Request, res: Response) => void res.json({ seen: seenBy(req) }));
    app.get('/', (_req: Request, res: Response) => void res.json({ nextRoute: true }));
    app.use(apiErrorHandler({ otherErrors: (error) => told.push(error) }));
    return { app, told };
  }

  it('runs its middlewares in order, then the routes after it', async () => {
    const { app } = appWith(note('a'), note('b'), note('c'));
    const res = await request(app).get('/').expect(200);
    expect(res.body).toEqual({ seen: ['a', 'b', 'c'] });
  });

  it('with no middlewares, passes the request on', async () => {
    const { app } = appWith();
    expect((await request(app).get('/').expect(200)).body).toEqual({ seen: [] });
  });

  it('ends where a middleware answers: the rest never runs', async () => {
    const after: string[] = [];
    const { app } = appWith(
      note('a'),
      (_req, res) => void (res as Response).status(401).json({ answered: true }),
      (_req, _res, next) => {
        after.push('ran');
        next();
      },
    );
    expect((await request(app).get('/').expect(401)).body).toEqual({ answered: true });
    expect(after).toEqual([]);
  });

  it.each([
    ['next(error)', (_req: unknown, _res: unknown, next: (error?: unknown) => void) => next(new Error('passed on'))],
    [
      'a throw',
      () => {
        throw new Error('thrown');
      },
    ],
    [
      'a rejected promise',
      async () => {
        await Promise.resolve();
        throw new Error('rejected');
      },
    ],
  ])('%s skips the rest and reaches the error handlers as a JSON 500', async (_how, failing) => {
    const after: string[] = [];
    const { app, told } = appWith(note('a'), failing, (_req, _res, next) => {
      after.push('ran');
      next();
    });
    const res = await request(app).get('/').expect(500);
    expect(res.body.error.code).toBe('internal_error');
    expect(after).toEqual([]);
    expect(told).toHaveLength(1);
    expect(told[0]).toBeInstanceOf(Error);
  });

  it('a rejection with no reason still reaches the error handlers', async () => {
    const { app, told } = appWith(() => Promise.reject(undefined));
    await request(app).get('/').expect(500);
    expect(String(told[0])).toMatch(/rejected without a reason/);
  });

  it("next('route') leaves the chain the way it leaves a separate layer", async () => {
    const after: string[] = [];
    const { app } = appWith(
      (_req, _res, next) => next('route'),
      (_req, _res, next) => {
        after.push('ran');
        next();
      },
    );
    // The chain is an app-level layer: 'route' skips the rest of it and goes on to the next layer, the first route.
    expect((await request(app).get('/').expect(200)).body).toEqual({ seen: [] });
    expect(after).toEqual([]);
  });

  it('a middleware that hands on asynchronously is waited for', async () => {
    const { app } = appWith(
      note('a'),
      (req, _res, next) => void setTimeout(() => note('later')(req as Request, _res as Response, next), 5),
      note('c'),
    );
    expect((await request(app).get('/').expect(200)).body).toEqual({ seen: ['a', 'later', 'c'] });
  });
});

describe('chain() arguments', () => {
  it('refuses what is not a middleware, naming its place', () => {
    expect(() => chain((_req, _res, next) => next(), 'auth' as never)).toThrow(TollgateError);
    expect(() => chain((_req, _res, next) => next(), null as never)).toThrow(/argument 2 is null/);
  });

  it('refuses an error handler: it belongs after the chain', () => {
    const handler = (_error: unknown, _req: unknown, _res: unknown, next: () => void) => next();
    expect(() => chain(handler as never)).toThrow(/four parameters, an error handler/);
  });
});
