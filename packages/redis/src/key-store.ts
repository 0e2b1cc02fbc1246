// API key store on Redis: every read goes to Redis, so disable and delete act at once in every process.
import type { ApiKeyRecord, KeyStore } from '@tollgate/core';
import type { Connection } from './connection.js';
import * as scripts from './scripts.js';

/** Keys share the `{keys}` hash tag: a lookup by hash reads the index and the record in one script on Cluster. */
export class RedisKeyStore implements KeyStore {
  readonly #base: string;
  readonly #index: string;
  readonly #ids: string;

  constructor(
    private readonly connection: Connection,
    prefix: string,
  ) {
    this.#base = `${prefix}{keys}:key:`;
    this.#index = `${prefix}{keys}:by-hash`;
    this.#ids = `${prefix}{keys}:ids`;
  }

  #send = (args: string[]) => this.connection.send(args, 'keys');

  async findByHash(sha256: string): Promise<ApiKeyRecord | undefined> {
    const reply = (await scripts.findKeyByHash.run(this.#send, [this.#index], [sha256, this.#base])) as unknown[] | null;
    return reply ? toRecord(reply[0], reply[1]) : undefined;
  }

  async findById(id: string): Promise<ApiKeyRecord | undefined> {
    const reply = (await this.#send(['HMGET', this.#base + id, 'record', 'disabled'])) as unknown[];
    return reply[0] == null ? undefined : toRecord(reply[0], reply[1]);
  }

  async put(record: ApiKeyRecord): Promise<void> {
    const flag = record.disabled === true ? '1' : '0';
    await scripts.putKey.run(this.#send, [this.#base + record.id, this.#index, this.#ids], [record.id, record.sha256, JSON.stringify(record), flag]);
  }

  async disable(id: string): Promise<boolean> {
    return (await scripts.disableKey.run(this.#send, [this.#base + id], [])) === 1;
  }

  async delete(id: string): Promise<boolean> {
    return (await scripts.deleteKey.run(this.#send, [this.#base + id, this.#index, this.#ids], [id])) === 1;
  }

  async list(): Promise<ApiKeyRecord[]> {
    const reply = (await scripts.listKeys.run(this.#send, [this.#ids], [this.#base])) as unknown[];
    const records: ApiKeyRecord[] = [];
    for (let i = 0; i < reply.length; i += 2) records.push(toRecord(reply[i], reply[i + 1]));
    return records.sort((a, b) => a.id.localeCompare(b.id));
  }
}

/** The `disabled` flag outside the JSON wins: disable() sets it without rewriting the record. */
function toRecord(json: unknown, disabled: unknown): ApiKeyRecord {
  const record = JSON.parse(String(json)) as ApiKeyRecord;
  if (disabled === '1') record.disabled = true;
  return record;
}
