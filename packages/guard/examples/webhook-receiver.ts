// packages/guard/examples/webhook-receiver.ts: a webhook receiver that checks the signature of the guard's alerts before it trusts them.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createAlerts } from '@tollgate/guard';

process.env.HOOK_SECRET ??= randomBytes(32).toString('hex'); // the secret the sender and the receiver share

// The receiver: the signature is over the raw body, so it is checked before the body is parsed.
const receiver = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    const rawBody = Buffer.concat(chunks);
    const signature = String(req.headers['x-tollgate-signature'] ?? '');
    const expected = `sha256=${createHmac('sha256', process.env.HOOK_SECRET!).update(rawBody).digest('hex')}`;
    const ok = expected.length === signature.length && timingSafeEqual(Buffer.from(expected), Buffer.from(signature));
    if (!ok) return void res.writeHead(401).end();
    const event = JSON.parse(rawBody.toString()) as { type: string; message: string };
    console.log(`${req.headers['x-tollgate-event']} (signature ok): ${event.message}`);
    res.writeHead(204).end();
  });
});
receiver.listen(0, '127.0.0.1');
await once(receiver, 'listening');
const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks/tollgate`;

// The sender: what createGuard({ alerts: { webhooks } }) sets up; here an event is emitted by hand.
const alerts = createAlerts({
  webhooks: [{ url, secretEnv: 'HOOK_SECRET' }],
  onFailure: (error) => console.log(`not delivered: ${String(error)}`),
});
alerts.emit({
  type: 'suspended',
  id: 'suspended:key:k1:1',
  tenantId: 'acme',
  keyId: 'k1',
  message: 'Key k1 (tenant acme) is suspended: spend anomaly.',
});
await alerts.close(); // resolves once the webhook answered

// A body signed with another secret is refused.
const forged = await fetch(url, {
  method: 'POST',
  headers: { 'x-tollgate-signature': `sha256=${'0'.repeat(64)}` },
  body: '{"type":"suspended"}',
});
console.log(`forged: ${forged.status}`);
receiver.close();
