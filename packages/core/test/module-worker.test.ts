// startModuleWorker: a worker thread running a module beside its caller, from dist or from its TypeScript source.
import { describe, expect, it } from '@jest/globals';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { startModuleWorker } from '../src/module-worker.js';
import { runSourceChild } from '../../../test/helpers/source-child.js';

const CALLER = new URL('./fixtures/caller.ts', import.meta.url).href;
const SOURCE = fileURLToPath(new URL('../src/store-contracts.ts', import.meta.url));

interface Said {
  resolved: string;
  loaded: string;
  execArgv: string[];
}

describe('startModuleWorker', () => {
  // A worker run from source resolves our packages by their TypeScript source, whether or not they have been built:
  // it does not inherit the parent's resolver (jest's, here).
  it('runs a TypeScript module that resolves our packages by their source export', async () => {
    const worker = startModuleWorker(CALLER, 'resolving-worker', { execArgv: ['--conditions=custom'] });
    try {
      const [said] = (await once(worker, 'message')) as [Said];
      expect({ ...said, resolved: fileURLToPath(said.resolved) }).toEqual({
        resolved: SOURCE,
        loaded: 'function',
        execArgv: ['--conditions=custom'],
      });
    } finally {
      await worker.terminate();
    }
  });

  // The gateway is started with V8 flags a worker may not be given (SERVER_NODE_ARGS): it inherits them silently.
  it('starts from source in a process started with the server’s V8 flags', async () => {
    const run = await runSourceChild(
      fileURLToPath(new URL('./fixtures/start-resolving-worker.ts', import.meta.url)),
      [],
      ['--max-semi-space-size=8'],
    );
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
    const said = JSON.parse(run.stdout) as Said;
    expect({ resolved: fileURLToPath(said.resolved), loaded: said.loaded }).toEqual({
      resolved: SOURCE,
      loaded: 'function',
    });
  });
});
