// Test helpers for real Redis: fail with a fix when it is not there, clean up only our own keys.
import { createClient } from 'redis';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/** Resolves with the URL once Redis answers PING; otherwise fails, saying how to start Redis. Never skips. */
export async function connectTestRedis(url = REDIS_URL): Promise<string> {
  const client = createClient({ url, socket: { reconnectStrategy: false, connectTimeout: 2000 } });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.ping();
    return url;
  } catch (error) {
    throw new Error(
      `These tests need a real Redis at ${url} (${(error as Error).message}). Start one with:\n` +
        '  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no\n' +
        'or point REDIS_URL at one.',
    );
  } finally {
    if (client.isOpen) await client.close();
  }
}

/** Deletes every key under `prefix` (SCAN + UNLINK; never FLUSHDB, the server is shared). */
export async function deleteKeysWithPrefix(url: string, prefix: string): Promise<void> {
  const client = createClient({ url });
  client.on('error', () => undefined);
  await client.connect();
  try {
    const pattern = `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`;
    for await (const keys of client.scanIterator({ MATCH: pattern, COUNT: 500 })) {
      if (keys.length > 0) await client.unlink(keys);
    }
  } finally {
    await client.close();
  }
}
