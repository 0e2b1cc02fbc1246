// @tollgate/cli: the operator's command line, `tollgate <keys|report|reconcile|reconcile-provider> ...`, to run from
// code as the `tollgate` bin runs it.
export { runCli } from './cli.js';
