#!/usr/bin/env node
// `tollgate <keys|report|reconcile> ...`: the operator's command line, from the installed package's JavaScript.
import { runCli } from './cli.js';

runCli(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  },
);
