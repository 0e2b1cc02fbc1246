#!/usr/bin/env node
// `tollgate-gateway [--config tollgate.json] [--port 8787]`: the gateway as a server, from the installed package's
// JavaScript; with no --config, the embedded demo default (memory stores, mock provider, demo keys printed).
import { parseArgs } from 'node:util';
import { serveGateway } from './serve.js';
import { packageVersion } from './version.js';

const USAGE = `Usage: tollgate-gateway [--config tollgate.json] [--port 8787] [--data-dir DIR]

  --config FILE     the gateway's JSON config (also TOLLGATE_CONFIG); without one, the embedded demo
  --port N          the port to listen on (also PORT; else the config's "port", else 8787)
  --data-dir DIR    keeps the ledger, the keys and the spool in DIR across restarts (also
                    TOLLGATE_DATA_DIR; over the config's "dataDir")
  --version         prints the version

The config is checked whole before anything starts (its fields, the names across them, each upstream's
apiKeyEnv set, PostgreSQL answering): every problem is printed and the exit code is 1. While running, the
keys of the config file are re-read every second; a change that does not validate still revokes, expires
and deletes keys, and is reported at error level and on /healthz until the file validates again.

REDIS_URL puts the limits and budgets on Redis; OTEL_* variables turn on tracing.
`;

let values: { config?: string; port?: string; 'data-dir'?: string; help?: boolean; version?: boolean };
try {
  ({ values } = parseArgs({
    options: {
      config: { type: 'string', short: 'c' },
      port: { type: 'string', short: 'p' },
      'data-dir': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean', short: 'v' },
    },
    allowPositionals: false,
  }));
} catch (error) {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n\n${USAGE}`);
  process.exit(2);
}
if (values.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}
if (values.version) {
  process.stdout.write(`tollgate-gateway ${packageVersion()}\n`);
  process.exit(0);
}
await serveGateway({
  ...process.env,
  ...(values.config === undefined ? {} : { TOLLGATE_CONFIG: values.config }),
  ...(values.port === undefined ? {} : { PORT: values.port }),
  ...(values['data-dir'] === undefined ? {} : { TOLLGATE_DATA_DIR: values['data-dir'] }),
});
