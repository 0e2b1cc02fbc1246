// req.tollgate: request ids kept, generated and echoed; settle runs each listener exactly once, errors contained.
import { IncomingMessage, ServerResponse } from 'node:http';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import express from 'express';
import express4 from 'express4';
import request from 'supertest';
import { contextOf, getContext, onSettleError, requestContext, type UsageRecord } from '@tollgate/core';
import { sequentialIds } from '@tollgate/core/provider-call';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

const reported: unknown[] = [];
beforeAll(() => onSettleError((error) => reported.push(error)));
afterAll(() => onSettleError(() => undefined));

function echoApp() {
  const app = express();
  app.use(requestContext());
  app.get('/', (req, res) => {
    res.json({ requestId: req.tollgate.requestId });
  });
  return app;
}

/** Resolves with the next settle of a request that reaches `app`'s handler. */
function settledOnce(handler: (req: express.Request, res: express.Response) => void) {
  const calls: (UsageRecord | undefined)[] = [];
  let done!: () => void;
  const finished = new Promise<void>((resolve) => (done = resolve));
  const app = express();
  app.use(requestContext());
  app.get('/', (req, res) => {
    req.tollgate.onSettle((record) => {
      calls.push(record);
      done();
    });
    handler(req, res);
  });
  return { app, calls, finished };
}

describe('request id', () => {
  it('keeps a valid incoming x-request-id and echoes it', async () => {
    const response = await request(echoApp()).get('/').set('x-request-id', 'req_01:abc.def@edge-7');
    expect(response.headers['x-request-id']).toBe('req_01:abc.def@edge-7');
    expect(response.body.requestId).toBe('req_01:abc.def@edge-7');
  });

  it('generates one when none is sent, and echoes it', async () => {
    const response = await request(echoApp()).get('/');
    expect(response.body.requestId).toMatch(UUID);
    expect(response.headers['x-request-id']).toBe(response.body.requestId);
  });

  it.each([
    ['spaces', 'has spaces in it'],
    ['header injection characters', 'abc\u00e9'],
    ['too long', 'a'.repeat(129)],
    ['empty', ''],
  ])('replaces an invalid one (%s)', async (_label, value) => {
    const response = await request(echoApp()).get('/').set('x-request-id', value);
    expect(response.body.requestId).toMatch(UUID);
    expect(response.headers['x-request-id']).toBe(response.body.requestId);
  });

  it('creates the context once per request, on first use', async () => {
    const app = express();
    app.get('/', (req, res) => {
      const first = getContext(req, res);
      res.json({ same: getContext(req, res) === first && req.tollgate === first });
    });
    const response = await request(app).get('/');
    expect(response.body.same).toBe(true);
    expect(response.headers['x-request-id']).toMatch(UUID);
  });
});

describe('where the context lives', () => {
  it('generates a different id for every request', async () => {
    const ids = new Set<string>();
    for (let i = 0; i < 5; i++) ids.add((await request(echoApp()).get('/')).body.requestId as string);
    expect(ids.size).toBe(5);
  });

  it.each([
    ['Express 4', express4 as unknown as typeof express],
    ['Express 5', express],
  ])("keeps %s requests' context as their own property: no prototype gets one", async (_name, factory) => {
    const app = factory();
    app.use(requestContext());
    app.get('/', (req, res) => {
      const prototypes: object[] = [];
      for (let proto = Object.getPrototypeOf(req) as object | null; proto; proto = Object.getPrototypeOf(proto))
        prototypes.push(proto);
      res.json({
        own: Object.hasOwn(req, 'tollgate'),
        onResponse: Object.hasOwn(res, 'tollgate'),
        onAPrototype: prototypes.some((proto) => Object.hasOwn(proto, 'tollgate')),
        same: req.tollgate === getContext(req, res) && req.tollgate === contextOf(res),
      });
    });
    expect((await request(app).get('/')).body).toEqual({
      own: true,
      onResponse: false,
      onAPrototype: false,
      same: true,
    });
    expect(Object.hasOwn(IncomingMessage.prototype, 'tollgate')).toBe(false);
  });

  it('leaves a request nobody asked about without a context', async () => {
    const app = express();
    app.get('/', (req, res) => {
      res.json({ has: req.tollgate !== undefined, found: contextOf(res) !== undefined });
    });
    expect((await request(app).get('/')).body).toEqual({ has: false, found: false });
  });

  it('finds a context made before Express took the request, as the example proxy makes it', async () => {
    const app = express();
    app.get('/', (req, res) => {
      res.json({
        requestId: getContext(req, res).requestId,
        keyId: req.tollgate.identity?.keyId,
        same: req.tollgate === getContext(req, res),
      });
    });
    const server = (req: IncomingMessage, res: ServerResponse) => {
      const early = getContext(req, res);
      early.identity = { keyId: 'early', scopes: [], authMethod: 'api_key' };
      app(req, res);
    };
    const response = await request(server).get('/');
    expect(response.body).toEqual({ requestId: response.headers['x-request-id'], keyId: 'early', same: true });
  });

  it('settles a plain Node request once its response closes', async () => {
    const calls: (UsageRecord | undefined)[] = [];
    let done!: () => void;
    const finished = new Promise<void>((resolve) => (done = resolve));
    const server = (req: IncomingMessage, res: ServerResponse) => {
      getContext(req, res).onSettle((record) => {
        calls.push(record);
        done();
      });
      res.end('ok');
    };
    expect((await request(server).get('/')).headers['x-request-id']).toMatch(UUID);
    await finished;
    expect(calls).toEqual([undefined]);
  });

  it('answers each request with its own context when requests interleave', async () => {
    const app = express();
    app.use(requestContext());
    // Each request asks, lets the others run, then asks again through every door: getContext, req.tollgate, contextOf.
    app.get('/:name', async (req, res) => {
      const first = getContext(req, res);
      first.identity = { keyId: req.params.name!, scopes: [], authMethod: 'api_key' };
      await new Promise((resolve) => setTimeout(resolve, 5));
      const again = [getContext(req, res), req.tollgate, contextOf(res)];
      res.json({ own: again.every((found) => found === first), keyIds: again.map((found) => found?.identity?.keyId) });
    });
    const names = ['a', 'b', 'c', 'd', 'e', 'f'];
    const answers = await Promise.all(names.map((name) => request(app).get(`/${name}`)));
    answers.forEach((answer, index) =>
      expect(answer.body).toEqual({ own: true, keyIds: [names[index], names[index], names[index]] }),
    );
  });

  it('keeps no closed response alive: nothing outside the request holds it', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    let held: WeakRef<object> | undefined;
    const app = express();
    app.use(requestContext());
    app.get('/', (req, res) => {
      held = new WeakRef(res);
      res.json({ requestId: getContext(req, res).requestId });
    });
    await request(app).get('/').expect(200);
    // The close comes after the answer; then the response must be collectable.
    for (let attempt = 0; attempt < 20 && held?.deref() !== undefined; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
      gc();
    }
    expect(held).toBeDefined();
    expect(held!.deref()).toBeUndefined();
  });

  it('lets req.tollgate be assigned, as test doubles do', () => {
    const req = Object.create(express.request) as express.Request;
    const context = { requestId: 'stand-in' } as express.Request['tollgate'];
    req.tollgate = context;
    expect(req.tollgate).toBe(context);
  });
});

declare module '@tollgate/core' {
  interface ContextVariableMap {
    'test.note': { text: string };
  }
}

describe('declared variables', () => {
  it("keep a package's own state per request, typed by its declaration", async () => {
    const app = express();
    app.use(requestContext());
    app.get('/:text', async (req, res) => {
      const before = req.tollgate.get('test.note');
      req.tollgate.set('test.note', { text: req.params.text! });
      await new Promise((resolve) => setImmediate(resolve));
      res.json({ before: before ?? null, after: req.tollgate.get('test.note')?.text });
    });
    const answers = await Promise.all(['x', 'y', 'z'].map((text) => request(app).get(`/${text}`)));
    expect(answers.map((answer) => answer.body)).toEqual([
      { before: null, after: 'x' },
      { before: null, after: 'y' },
      { before: null, after: 'z' },
    ]);
  });
});

describe('settle', () => {
  it('runs every listener exactly once, however often settle is called', async () => {
    const app = express();
    const counts = { a: 0, b: 0, late: 0 };
    let settledFlags: boolean[] = [];
    app.get('/', async (req, res) => {
      const context = getContext(req, res);
      context.metered = true;
      context.onSettle(() => void counts.a++);
      context.onSettle(async () => void counts.b++);
      settledFlags.push(context.settled);
      await Promise.all([context.settle(undefined), context.settle(undefined)]);
      await context.settle(undefined);
      settledFlags.push(context.settled);
      context.onSettle(() => void counts.late++);
      res.json({});
    });
    settledFlags = [];
    await request(app).get('/');
    await new Promise((resolve) => setImmediate(resolve));
    expect(counts).toEqual({ a: 1, b: 1, late: 1 });
    expect(settledFlags).toEqual([false, true]);
  });

  it('hands the record to listeners and keeps it as context.usage', async () => {
    const record = { requestId: 'r1', costNanoUsd: 42 } as UsageRecord;
    const seen: (UsageRecord | undefined)[] = [];
    const app = express();
    app.get('/', async (req, res) => {
      const context = getContext(req, res);
      context.metered = true;
      context.onSettle((r) => void seen.push(r));
      await context.settle(record);
      res.json({ usage: context.usage });
    });
    const response = await request(app).get('/');
    expect(seen).toEqual([record]);
    expect(response.body.usage).toEqual(record);
  });

  it('contains listener errors (sync and async) and still runs the others', async () => {
    reported.length = 0;
    let ran = 0;
    const app = express();
    app.get('/', async (req, res) => {
      const context = getContext(req, res);
      context.metered = true;
      context.onSettle(() => {
        throw new Error('sync boom');
      });
      context.onSettle(async () => {
        throw new Error('async boom');
      });
      context.onSettle(() => void ran++);
      await context.settle(undefined);
      res.json({ ok: true });
    });
    const response = await request(app).get('/');
    expect(response.status).toBe(200);
    expect(ran).toBe(1);
    expect(reported.map((e) => (e as Error).message).sort()).toEqual(['async boom', 'sync boom']);
  });

  it('settles with undefined when the response closes and nothing metered the request', async () => {
    const { app, calls, finished } = settledOnce((_req, res) => void res.json({ ok: true }));
    await request(app).get('/');
    await finished;
    expect(calls).toEqual([undefined]);
  });

  it('leaves settling to the meter when one took charge', async () => {
    let context: ReturnType<typeof getContext> | undefined;
    const app = express();
    app.get('/', (req, res) => {
      context = getContext(req, res);
      context.metered = true;
      res.json({ ok: true });
    });
    await request(app).get('/');
    await new Promise((resolve) => setImmediate(resolve));
    expect(context?.settled).toBe(false);
  });
});

describe("the meter's charge", () => {
  it("is told of the close by the context's own listener: a metered request adds none of its own", async () => {
    const closes: number[] = [];
    let listeners = 0;
    const app = express();
    app.get('/', (req, res) => {
      const context = getContext(req, res);
      context.metered = true;
      context.meterCharge = { responseClosed: () => closes.push(res.statusCode) };
      listeners = res.listenerCount('close');
      res.status(201).json({ ok: true });
    });
    await request(app).get('/');
    await new Promise((resolve) => setImmediate(resolve));
    expect(closes).toEqual([201]);
    expect(listeners).toBe(1);
  });

  it('finds the context from the response alone', async () => {
    let found = false;
    const app = express();
    app.get('/', (req, res) => {
      const context = getContext(req, res);
      found = contextOf(res) === context;
      res.json({ ok: true });
    });
    await request(app).get('/');
    expect(found).toBe(true);
  });
});

describe('sequentialIds', () => {
  it('counts in the last 12 hex digits of one UUID-shaped prefix, across the carry between its halves', () => {
    const next = sequentialIds(0xff_ffff);
    const ids = [next(), next(), next()];
    for (const id of ids) expect(id).toMatch(UUID);
    expect(ids.map((id) => id.slice(24))).toEqual(['000000ffffff', '000001000000', '000001000001']);
    expect(new Set(ids.map((id) => id.slice(0, 24))).size).toBe(1);
    expect(sequentialIds(2 ** 44)().slice(24)).toBe('100000000000');
  });
});

describe('markSending', () => {
  it('runs the onSending listeners once, synchronously, and a late listener at once', async () => {
    const order: string[] = [];
    const app = express();
    app.use(requestContext());
    app.get('/', (req, res) => {
      req.tollgate.onSending(() => order.push('first'));
      req.tollgate.onSending(() => {
        throw new Error('a listener that fails');
      });
      req.tollgate.onSending(() => order.push('second'));
      req.tollgate.markSending();
      order.push('sent');
      // A retry of the same call notes nothing again.
      req.tollgate.markSending();
      req.tollgate.onSending(() => order.push('late'));
      res.json({ ok: true });
    });
    const emitWarning = jest.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    let warnings: string[];
    try {
      expect((await request(app).get('/')).status).toBe(200);
      warnings = emitWarning.mock.calls.map(([warning]) => String(warning));
    } finally {
      emitWarning.mockRestore();
    }
    expect(order).toEqual(['first', 'second', 'sent', 'late']);
    expect(warnings).toEqual(['tollgate: an onSending listener failed: a listener that fails']);
  });
});
