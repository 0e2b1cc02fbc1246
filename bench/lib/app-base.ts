// What every bench app shares: Express set up the same way, and the handler that answers at once.
import type { RequestListener } from 'node:http';
import express from 'express';
import type { Express, Request, Response } from 'express';
import { CHAT_COMPLETION } from './fixtures.js';

/** An app a child can serve: Express, or a bare node:http listener where the bench measures Node without it. */
export interface BuiltApp<App extends RequestListener = Express> {
  app: App;
  /** Said next to the figures when the app is not what its name promises (e.g. a package has not landed). */
  note?: string;
  /** Release clients and timers the app owns. */
  close(): Promise<void>;
}

export type AppOptions = Record<string, unknown>;

/** Express as every side is set up: JSON bodies, no x-powered-by. */
export function baseApp(): Express {
  const app = express();
  app.disable('x-powered-by');
  app.use(express.json({ limit: '2mb' }));
  return app;
}

/** The handler that answers at once, identical for every chain case. */
export function answerAtOnce(_req: Request, res: Response): void {
  res.type('application/json').send(CHAT_COMPLETION);
}
