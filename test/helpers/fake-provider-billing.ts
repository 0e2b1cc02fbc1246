// Local stand-ins for the providers' billing APIs, answering their documented shapes one day per page:
// OpenAI's organization costs (GET /v1/organization/costs) and Anthropic's cost report (GET /v1/organizations/cost_report).
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

/** What a provider billed: day (YYYY-MM-DD) → model → USD. */
export type Billed = Record<string, Record<string, number>>;

export interface FakeBilling {
  baseUrl: string;
  /** Every request's path and query, in order. */
  requests: string[];
  close(): Promise<void>;
}

const DAY = 86_400;

export async function startFakeBilling(
  provider: 'openai' | 'anthropic',
  billed: Billed,
  adminKey: string,
): Promise<FakeBilling> {
  const requests: string[] = [];
  const server = createServer((req, res) => {
    requests.push(req.url ?? '');
    const url = new URL(req.url ?? '/', 'http://fake');
    const authorized =
      provider === 'openai'
        ? req.headers.authorization === `Bearer ${adminKey}`
        : req.headers['x-api-key'] === adminKey && req.headers['anthropic-version'] === '2023-06-01';
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (!authorized) return send(401, { error: { type: 'authentication_error', message: 'invalid admin key' } });
    const expected = provider === 'openai' ? '/v1/organization/costs' : '/v1/organizations/cost_report';
    if (url.pathname !== expected) return send(404, { error: { message: 'not found' } });
    // The days asked for, from the cursor (the next day to answer) or the start.
    const start =
      provider === 'openai'
        ? Number(url.searchParams.get('start_time'))
        : Date.parse(url.searchParams.get('starting_at') ?? '') / 1000;
    const end =
      provider === 'openai'
        ? Number(url.searchParams.get('end_time'))
        : Date.parse(url.searchParams.get('ending_at') ?? '') / 1000;
    const page = url.searchParams.get('page');
    const from = page ? Number(Buffer.from(page, 'base64url').toString()) : start;
    const day = new Date(from * 1000).toISOString().slice(0, 10);
    const costs = Object.entries(billed[day] ?? {});
    const more = from + DAY < end;
    const next = more ? Buffer.from(String(from + DAY)).toString('base64url') : null;
    if (provider === 'openai') {
      return send(200, {
        object: 'page',
        data: [
          {
            object: 'bucket',
            start_time: from,
            end_time: from + DAY,
            results: costs.flatMap(([model, usd]) => [
              // Two line items per model, as OpenAI bills input and output apart.
              {
                object: 'organization.costs.result',
                amount: { value: usd * 0.25, currency: 'usd' },
                line_item: `${model}, input`,
                project_id: null,
              },
              {
                object: 'organization.costs.result',
                amount: { value: usd * 0.75, currency: 'usd' },
                line_item: `${model}, output`,
                project_id: null,
              },
            ]),
          },
        ],
        has_more: more,
        next_page: next,
      });
    }
    return send(200, {
      data: [
        {
          starting_at: new Date(from * 1000).toISOString(),
          ending_at: new Date((from + DAY) * 1000).toISOString(),
          results: costs.map(([model, usd]) => ({
            amount: (usd * 100).toFixed(4),
            currency: 'USD',
            model,
            cost_type: 'tokens',
            description: `${model} tokens`,
            token_type: null,
            context_window: '0-200k',
            service_tier: 'standard',
            workspace_id: null,
          })),
        },
      ],
      has_more: more,
      next_page: next,
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    requests,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
