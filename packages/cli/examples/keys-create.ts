// packages/cli/examples/keys-create.ts: the `tollgate` command run from code; a key created without a target is printed, not stored.
import { runCli } from '@tollgate/cli';

let output = '';
const code = await runCli(['keys', 'create', '--tenant', 'acme', '--user', 'alice', '--scopes', 'chat'], {
  stdout: { write: (text: string) => (output += text) },
  stderr: process.stderr,
});
console.log(code, output);
