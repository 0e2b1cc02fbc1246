// The client's address as the guard counts it: Express's req.ip (so `trust proxy` decides), IPv6 by its /56 subnet.
import type { IncomingMessage } from 'node:http';
import { ipKeyGenerator } from 'express-rate-limit';

/**
 * `req.ip` when Express set it (the real client behind a trusted proxy, per `app.set('trust
 * proxy', ...)`), else the socket's peer; IPv6 addresses collapsed to their /56 subnet, as
 * express-rate-limit's `ipKeyGenerator` does, so one host cannot rotate through its own block.
 */
export function clientAddress(req: IncomingMessage): string {
  const address = (req as IncomingMessage & { ip?: string }).ip ?? req.socket?.remoteAddress;
  return address ? ipKeyGenerator(address, 56) : 'unknown';
}
