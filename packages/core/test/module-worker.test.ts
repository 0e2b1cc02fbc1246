// startModuleWorker: a worker thread running a module beside its caller, from dist or from its TypeScript source.
import { describe, expect, it } from '@jest/globals';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { startModuleWorker } from '../src/module-worker.js';

describe('startModuleWorker', () => {
  // A worker run from source resolves our packages by their TypeScript source, whether or not they have been built:
  // it does not inherit the parent's resolver (jest's, here), so it must be told the condition itself.
  it('runs a TypeScript module that resolves our packages by their source export', async () => {
    const worker = startModuleWorker(new URL('./fixtures/caller.ts', import.meta.url).href, 'resolving-worker');
    try {
      const [message] = (await once(worker, 'message')) as [{ resolved: string; loaded: string }];
      expect({ resolved: fileURLToPath(message.resolved), loaded: message.loaded }).toEqual({
        resolved: fileURLToPath(new URL('../src/store-contracts.ts', import.meta.url)),
        loaded: 'function',
      });
    } finally {
      await worker.terminate();
    }
  });

  it('keeps execArgv a caller gives, adding the source condition once', async () => {
    const worker = startModuleWorker(new URL('./fixtures/caller.ts', import.meta.url).href, 'resolving-worker', {
      execArgv: ['--conditions=custom', '--conditions=source'],
    });
    try {
      const [message] = (await once(worker, 'message')) as [{ resolved: string; execArgv: string[] }];
      expect(message).toMatchObject({ execArgv: ['--conditions=custom', '--conditions=source'] });
      expect(fileURLToPath(message.resolved)).toBe(
        fileURLToPath(new URL('../src/store-contracts.ts', import.meta.url)),
      );
    } finally {
      await worker.terminate();
    }
  });
});
