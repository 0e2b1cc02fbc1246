// Core's one webhook delivery (budget and guard alerts go through it): retries, backoff bounds, give-ups and close.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { webhookDelivery, webhookUrl } from '@tollgate/core/webhook';
import { fakeOnly } from '../../../test/helpers/fake-clock.js';

/** A receiver that answers each POST with the next status of `statuses` (the last one repeated), recording what came. */
let statuses: number[] = [];
const received: { headers: http.IncomingHttpHeaders; body: string }[] = [];
let server: http.Server;
let url: URL;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += String(chunk)));
    req.on('end', () => {
      received.push({ headers: req.headers, body });
      res.statusCode = statuses.length > 1 ? statuses.shift()! : statuses[0]!;
      // "HOLD" is answered late: a delivery closed meanwhile is closed during its try.
      if (body.includes('HOLD')) setTimeout(() => res.end('{}'), 300);
      else res.end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/hook/secret-token`);
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));
afterEach(() => {
  jest.useRealTimers();
});

/** Waits on real turns of the event loop (the receiver and the delivery's fetch run on real I/O) until `done()`. */
async function turnsUntil(done: () => boolean, what: string): Promise<void> {
  const until = performance.now() + 5_000;
  while (!done()) {
    if (performance.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

function delivery(options: { attempts?: number; initialDelayMs?: number; maxDelayMs?: number } = {}) {
  const failures: { error: unknown; item: string }[] = [];
  const sender = webhookDelivery<string>({
    url,
    headers: { 'x-common': 'yes' },
    attempts: options.attempts ?? 4,
    initialDelayMs: options.initialDelayMs ?? 10,
    maxDelayMs: options.maxDelayMs ?? 20,
    timeoutMs: 2_000,
    onFailure: (error, item) => failures.push({ error, item }),
  });
  return { sender, failures };
}

describe('webhookDelivery', () => {
  it('retries what the receiver may recover from until it takes the event, with the headers of both kinds', async () => {
    received.length = 0;
    statuses = [503, 429, 200];
    const { sender, failures } = delivery();
    sender.send('event-1', '{"n":1}', { 'x-event': 'one' });
    await sender.flush();
    expect(received).toHaveLength(3);
    expect(received.map((r) => r.body)).toEqual(['{"n":1}', '{"n":1}', '{"n":1}']);
    expect(received[2]!.headers).toMatchObject({
      'content-type': 'application/json',
      'x-common': 'yes',
      'x-event': 'one',
    });
    expect(failures).toEqual([]);
  });

  it('gives up at once on a status that will not change, and reports it with the origin only', async () => {
    received.length = 0;
    statuses = [400];
    const { sender, failures } = delivery();
    expect(sender.origin).toBe(url.origin);
    sender.send('event-2', '{}');
    await sender.flush();
    expect(received).toHaveLength(1);
    expect(failures).toHaveLength(1);
    expect(failures[0]!.item).toBe('event-2');
    expect(String(failures[0]!.error)).toBe(`Error: HTTP 400 from ${url.origin}`);
    expect(String(failures[0]!.error)).not.toContain('secret-token');
  });

  it('tries `attempts` times, each wait below maxDelay however large the base, then reports the last error', async () => {
    received.length = 0;
    statuses = [502];
    // The waits between tries are the delivery's timers: jest's, moved by the test. Its fetch and the receiver are real.
    fakeOnly(['setTimeout', 'clearTimeout']);
    // A base of 10 minutes capped at 20 ms: each wait is over once 20 ms have passed.
    const { sender, failures } = delivery({ attempts: 4, initialDelayMs: 600_000, maxDelayMs: 20 });
    sender.send('event-3', '{}');
    for (let tried = 1; tried < 4; tried++) {
      await turnsUntil(() => jest.getTimerCount() === 1, `the wait after try ${tried}`);
      expect(received).toHaveLength(tried);
      jest.advanceTimersByTime(20);
      expect(jest.getTimerCount()).toBe(0);
    }
    await sender.flush();
    expect(received).toHaveLength(4);
    expect(failures.map((f) => f.item)).toEqual(['event-3']);
  });

  it('close() ends a delivery waiting for its next try, without reporting it as given up', async () => {
    received.length = 0;
    statuses = [503];
    const { sender, failures } = delivery({ attempts: 3, initialDelayMs: 600_000, maxDelayMs: 600_000 });
    sender.send('event-4', '{}');
    // The first try has been answered; the next one waits for up to ten minutes.
    while (received.length < 1) await new Promise((resolve) => setTimeout(resolve, 5));
    sender.close();
    await sender.flush();
    expect(received).toHaveLength(1);
    expect(failures).toEqual([]);
  });

  it('close() during a try ends the delivery too: no wait for the next try after it', async () => {
    received.length = 0;
    statuses = [503];
    const { sender, failures } = delivery({ attempts: 3, initialDelayMs: 600_000, maxDelayMs: 600_000 });
    sender.send('event-5', '"HOLD"');
    while (received.length < 1) await new Promise((resolve) => setTimeout(resolve, 5));
    // The receiver holds its answer: the try is under way when the delivery closes.
    sender.close();
    await sender.flush();
    expect(received).toHaveLength(1);
    expect(failures).toEqual([]);
  });

  it('takes only absolute http(s) URLs', () => {
    expect(webhookUrl('https://hooks.example/x', 'ERR_X', 'webhook.url').href).toBe('https://hooks.example/x');
    expect(() => webhookUrl('/relative', 'ERR_X', 'webhook.url')).toThrow(
      'webhook.url must be an absolute http(s) URL; got "/relative"',
    );
    expect(() => webhookUrl('ftp://hooks.example/x', 'ERR_X', 'webhook.url')).toThrow(
      'webhook.url must be http or https; got ftp:',
    );
  });
});
