// bodyAfterAuth: no body is read for a caller without valid credentials, and a body must arrive within its own deadline.
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import { afterEach, describe, expect, it, jest } from '@jest/globals';
import express from 'express';
import request from 'supertest';
import { apiErrorHandler } from '@tollgate/core';
import { bodyAfterAuth } from '@tollgate/guard';
import { fakeAuth } from './helpers.js';
import { fakeOnly } from '../../../test/helpers/fake-clock.js';

const servers: { close(): void }[] = [];
afterEach(() => {
  jest.useRealTimers();
  servers.splice(0).forEach((server) => server.close());
});

function app(timeout: string) {
  let parsed = 0;
  const parser = express.json({ limit: '2mb' });
  const counted: typeof parser = (req, res, next) => {
    parsed++;
    parser(req, res, next);
  };
  const application = express();
  application.post('/v1/chat', fakeAuth({ k1: {} }), bodyAfterAuth(counted, { timeout }), (req, res) =>
    res.json({ got: req.body }),
  );
  application.use(apiErrorHandler());
  return { application, parsed: () => parsed };
}

/** Sends headers and the first bytes of a body that never ends; `answer()` is what the server said so far. */
async function startSlowBody(port: number, authorization: string): Promise<{ socket: net.Socket; answer(): string }> {
  const socket = net.connect(port, '127.0.0.1');
  await once(socket, 'connect');
  socket.write(
    `POST /v1/chat HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000000\r\nauthorization: ${authorization}\r\n\r\n{"a":`,
  );
  let answer = '';
  socket.on('data', (chunk: Buffer) => (answer += chunk.toString()));
  return { socket, answer: () => answer };
}

/** A slow body's raw answer, once the server speaks. */
async function slowBody(port: number, authorization: string): Promise<string> {
  const { socket, answer } = await startSlowBody(port, authorization);
  await once(socket, 'data');
  await new Promise((resolve) => setTimeout(resolve, 20));
  socket.destroy();
  return answer();
}

/** Waits on real turns of the event loop (the sockets are real) until `done()`. */
async function turnsUntil(done: () => boolean, what: string): Promise<void> {
  const until = performance.now() + 5_000;
  while (!done()) {
    if (performance.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

describe('bodyAfterAuth', () => {
  it('parses the body of an identified caller', async () => {
    const { application } = app('5s');
    const res = await request(application).post('/v1/chat').set('authorization', 'Bearer k1').send({ hello: 'world' });
    expect(res.body).toEqual({ got: { hello: 'world' } });
  });

  it('refuses a caller without credentials from its headers: its body is never read', async () => {
    const { application, parsed } = app('5s');
    const server = application.listen(0, '127.0.0.1');
    servers.push(server);
    await once(server, 'listening');
    const answer = await slowBody((server.address() as AddressInfo).port, 'Bearer nobody');
    expect(answer).toMatch(/^HTTP\/1\.1 401/);
    expect(parsed()).toBe(0);
  });

  it('answers 408 and closes the connection when the body does not arrive within its deadline', async () => {
    // The deadline is a timer: jest's, moved by the test. The sockets are real.
    fakeOnly(['setTimeout', 'clearTimeout']);
    const { application } = app('200ms');
    const server = application.listen(0, '127.0.0.1');
    servers.push(server);
    await once(server, 'listening');
    const { socket, answer: answerSoFar } = await startSlowBody((server.address() as AddressInfo).port, 'Bearer k1');
    await turnsUntil(() => jest.getTimerCount() === 1, 'the body deadline');
    jest.advanceTimersByTime(199);
    expect(jest.getTimerCount()).toBe(1);
    jest.advanceTimersByTime(1);
    expect(jest.getTimerCount()).toBe(0);
    // The connection is closed once the answer is out.
    await once(socket, 'close');
    const answer = answerSoFar();
    expect(answer).toMatch(/^HTTP\/1\.1 408/);
    expect(answer).toMatch(/connection: close/i);
    expect(answer).toContain('did not arrive within 0.2s');
  });

  it('refuses a request no auth middleware identified: a wiring mistake, never a body read', async () => {
    const application = express();
    application.post('/x', bodyAfterAuth(express.json()), (_req, res) => res.json({}));
    const res = await request(application).post('/x').send({ a: 1 });
    expect(res.status).toBe(500);
    expect(res.body.error.code).toBe('misconfigured_route');
  });
});
