// A local stand-in for Stripe's billing meter events endpoint (POST /v1/billing/meter_events, form-encoded, as the
// official `stripe` package sends it): identifiers kept unique as Stripe keeps them, failures chosen by the test.
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeMeterEvent {
  eventName: string;
  identifier: string;
  customer: string;
  value: string;
  timestamp: number;
}

export interface FakeStripe {
  baseUrl: string;
  /** Events accepted, once each. */
  events: FakeMeterEvent[];
  /** Every POST of each identifier, accepted or not. */
  posts: Map<string, number>;
  /** The status to fail the n-th POST (1-based) of an identifier with, or undefined to answer it. */
  failWith: (identifier: string, post: number) => number | undefined;
  /** True to accept the n-th POST of an identifier and lose the answer (a 500 instead): a crash between the two. */
  loseAnswer: (identifier: string, post: number) => boolean;
  close(): Promise<void>;
}

const SECRET = /^Bearer sk_test_\w+$/;

export async function startFakeStripe(knownCustomers: readonly string[]): Promise<FakeStripe> {
  const fake: Omit<FakeStripe, 'baseUrl' | 'close'> = {
    events: [],
    posts: new Map(),
    failWith: () => undefined,
    loseAnswer: () => false,
  };
  const error = (
    res: import('node:http').ServerResponse,
    status: number,
    message: string,
    type = 'invalid_request_error',
  ) => {
    res.writeHead(status, { 'content-type': 'application/json', 'request-id': `req_${Date.now()}` });
    res.end(JSON.stringify({ error: { type, message } }));
  };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v1/billing/meter_events')
        return error(res, 404, 'Unrecognized request URL');
      if (!SECRET.test(req.headers.authorization ?? ''))
        return error(res, 401, 'Invalid API Key provided', 'authentication_error');
      const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
      const identifier = form.get('identifier') ?? '';
      const post = (fake.posts.get(identifier) ?? 0) + 1;
      fake.posts.set(identifier, post);
      const failure = fake.failWith(identifier, post);
      if (failure !== undefined) return error(res, failure, 'Something went wrong on our end', 'api_error');
      const customer = form.get('payload[stripe_customer_id]') ?? '';
      if (!knownCustomers.includes(customer)) return error(res, 400, `No such customer: '${customer}'`);
      if (fake.events.some((event) => event.identifier === identifier))
        return error(res, 400, `An event already exists with identifier ${identifier}.`);
      const event: FakeMeterEvent = {
        eventName: form.get('event_name') ?? '',
        identifier,
        customer,
        value: form.get('payload[value]') ?? '',
        timestamp: Number(form.get('timestamp')),
      };
      fake.events.push(event);
      if (fake.loseAnswer(identifier, post)) return error(res, 500, 'Something went wrong on our end', 'api_error');
      res.writeHead(200, { 'content-type': 'application/json', 'request-id': `req_${Date.now()}` });
      res.end(
        JSON.stringify({
          object: 'billing.meter_event',
          created: Math.floor(Date.now() / 1000),
          event_name: event.eventName,
          identifier,
          livemode: false,
          payload: { stripe_customer_id: customer, value: event.value },
          timestamp: event.timestamp,
        }),
      );
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return Object.assign(fake as FakeStripe, {
    baseUrl: `http://127.0.0.1:${port}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  });
}
