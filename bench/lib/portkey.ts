// Parent side of the Portkey gateway in the proxy benchmark: its own Node server (from npm) as a child process on a free port.
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { PATCH_MARK } from './portkey-stream-fix.js';

interface PortkeyGateway {
  readonly url: string;
  readonly pid: number;
  close(): Promise<void>;
}

const GATEWAY_ENTRY = fileURLToPath(import.meta.resolve('@portkey-ai/gateway/build/start-server.js'));
const STREAM_FIX = new URL('./portkey-stream-fix.ts', import.meta.url).href;
/** Registers the stream fix as a module hook before the gateway loads (after tsx's, which loads the fix's TypeScript). */
const REGISTER_STREAM_FIX = `data:text/javascript,${encodeURIComponent(
  `import { register } from 'node:module'; register(${JSON.stringify(STREAM_FIX)});`,
)}`;
const START_TIMEOUT_MS = 30_000;

/** The gateway takes a port number only, so ask the OS for one that is free now. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no free port');
  return address.port;
}

/**
 * Starts the gateway as its package's own start script does (`--headless`: no web UI), with the tsx loader of
 * this process and the stream fix, and resolves once it says it is ready. Its output stays out of the bench's
 * terminal; the last lines are kept for the error if it does not start.
 */
export async function startPortkeyGateway(): Promise<PortkeyGateway> {
  const port = await freePort();
  const args = [...process.execArgv, '--import', REGISTER_STREAM_FIX, GATEWAY_ENTRY, `--port=${port}`, '--headless'];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const lastLines: string[] = [];
  const keep = (chunk: Buffer) => {
    lastLines.push(
      ...chunk
        .toString('utf8')
        .split('\n')
        .filter((line) => line.trim() !== ''),
    );
    lastLines.splice(0, Math.max(0, lastLines.length - 20));
  };
  child.stderr.on('data', keep);
  let exited = false;
  const gone = new Promise<void>((resolve) =>
    child.once('exit', () => {
      exited = true;
      resolve();
    }),
  );
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`Portkey gateway not ready after ${START_TIMEOUT_MS} ms`)),
        START_TIMEOUT_MS,
      );
      let seen = '';
      child.stdout.on('data', (chunk: Buffer) => {
        keep(chunk);
        seen += chunk.toString('utf8');
        if (seen.includes(PATCH_MARK)) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`Portkey gateway exited (${code ?? signal}): ${lastLines.join(' | ')}`));
      });
    });
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
  // Once ready, drop what it prints: nothing reads it and a full pipe would stall the gateway.
  child.stdout.removeAllListeners('data').resume();
  child.stderr.removeAllListeners('data').resume();
  return {
    url: `http://127.0.0.1:${port}`,
    pid: child.pid ?? -1,
    close: async () => {
      if (exited) return;
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      child.kill('SIGTERM');
      await gone;
      clearTimeout(timer);
    },
  };
}
