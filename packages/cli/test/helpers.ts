// Test helpers for the commands: one run of `tollgate keys ...` in process, and an app that says who a key is.
import express from 'express';
import type { Express, RequestHandler } from 'express';
import { apiErrorHandler, getContext } from '@tollgate/core';
import { runKeysCommand } from '../src/keys-command.js';

/** An app that runs `auth` then answers with `req.tollgate.identity` as JSON: a key the command made, at work. */
export function identityServer(auth: RequestHandler): Express {
  const app = express();
  app.use(auth);
  app.all('/{*path}', (req, res) => {
    res.json({ identity: getContext(req, res).identity ?? null });
  });
  app.use(apiErrorHandler());
  return app;
}

/** Runs `tollgate keys ...` in process and captures what it prints. */
export async function runKeys(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runKeysCommand(argv, {
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
  });
  return { code, stdout, stderr };
}
