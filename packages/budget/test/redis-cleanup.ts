// Deletes a test's own Redis keys: SCAN its unique prefix, never FLUSH the shared server.
import { createRedisStores } from '@tollgate/redis';

export async function deleteRedisPrefix(url: string, prefix: string): Promise<void> {
  const cleaner = createRedisStores({ url, prefix });
  let cursor = '0';
  do {
    const [next, keys] = (await cleaner.sendCommand(['SCAN', cursor, 'MATCH', `${prefix}*`, 'COUNT', '1000'])) as [
      string,
      string[],
    ];
    cursor = next;
    if (keys.length > 0) await cleaner.sendCommand(['DEL', ...keys]);
  } while (cursor !== '0');
  await cleaner.close();
}
