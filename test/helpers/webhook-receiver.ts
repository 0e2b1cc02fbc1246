// A webhook receiver for alert tests: answers 503 to the first deliveries it is told to refuse (so retries show), keeps the rest.
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface WebhookReceiver {
  /** Where to deliver (`http://127.0.0.1:<port>/hook`). */
  readonly url: string;
  /** The deliveries kept, in arrival order (refused ones are not in it). */
  readonly deliveries: { headers: IncomingHttpHeaders; body: string }[];
  /** Every delivery attempt, refused ones included. */
  attempts(): number;
  close(): Promise<void>;
}

export async function startWebhookReceiver(options: { refuseFirst?: number } = {}): Promise<WebhookReceiver> {
  const deliveries: { headers: IncomingHttpHeaders; body: string }[] = [];
  let attempts = 0;
  let refuse = options.refuseFirst ?? 0;
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      attempts++;
      if (refuse > 0) {
        refuse--;
        res.statusCode = 503;
        res.end();
        return;
      }
      deliveries.push({ headers: req.headers, body });
      res.end('ok');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    deliveries,
    attempts: () => attempts,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
