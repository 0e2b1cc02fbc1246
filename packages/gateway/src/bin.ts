#!/usr/bin/env node
// `tollgate-gateway [--config tollgate.json] [--port 8787] [--check]`: the gateway as a server, from the installed
// package's JavaScript; with no --config, the embedded demo default (memory stores, mock provider, demo keys printed).
import { parseArgs } from 'node:util';
import { checkGatewayConfig } from './check.js';
import { serveGateway } from './serve.js';
import { packageVersion } from './version.js';

const USAGE = `Usage: tollgate-gateway [--config tollgate.json] [--port 8787] [--data-dir DIR] [--check]

  --config FILE     the gateway's JSON config (also TOLLGATE_CONFIG); without one, the embedded demo
  --port N          the port to listen on (also PORT; else the config's "port", else 8787)
  --data-dir DIR    keeps the ledger, the keys and the spool in DIR across restarts (also
                    TOLLGATE_DATA_DIR; over the config's "dataDir")
  --check           checks the config as the start would, without serving: every problem, each with
                    its field, the value given and what was expected, and whether the Redis, the
                    PostgreSQL and the price source it names answer (exit 1), or one line saying what
                    it would serve (exit 0)
  --version         prints the version

The config is checked whole before anything starts (its fields, the names across them, the environment
variables it names, PostgreSQL answering): every problem is printed and the exit code is 1. A config must
name its upstreams; "upstreams": { "mock": { "kind": "mock" } } serves the built-in mock's fake answers on
purpose. While running, the
keys of the config file are re-read every second; a change that does not validate still revokes, expires
and deletes keys, and is reported at error level and on /healthz until the file validates again.

SIGTERM or SIGINT drains: /readyz answers 503, new requests are served for the config's shutdown.drainDelay
(5s), then what is in flight gets shutdown.timeout (30s), every record is flushed, and the exit code is 0.
GET /livez and GET /readyz are the liveness and readiness probes.

REDIS_URL puts the limits and budgets on Redis; OTEL_* variables turn on tracing.
`;

let values: {
  config?: string;
  port?: string;
  'data-dir'?: string;
  check?: boolean;
  help?: boolean;
  version?: boolean;
};
try {
  ({ values } = parseArgs({
    options: {
      config: { type: 'string', short: 'c' },
      port: { type: 'string', short: 'p' },
      'data-dir': { type: 'string' },
      check: { type: 'boolean' },
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
const env = {
  ...process.env,
  ...(values.config === undefined ? {} : { TOLLGATE_CONFIG: values.config }),
  ...(values.port === undefined ? {} : { PORT: values.port }),
  ...(values['data-dir'] === undefined ? {} : { TOLLGATE_DATA_DIR: values['data-dir'] }),
};
if (values.check) {
  const { code, text } = await checkGatewayConfig(env);
  // exitCode, not exit(): what is written to a pipe reaches it before the process ends.
  (code === 0 ? process.stdout : process.stderr).write(text);
  process.exitCode = code;
} else {
  await serveGateway(env);
}
