// Every tenant the gateway serves, the config file's and those kept as data, behind one lookup (docs/tenants.md).
import { randomUUID } from 'node:crypto';
import type { BudgetSpec } from '@tollgate/budget';
import type { Identity } from '@tollgate/core';
import type { StoredTenantRow, TenantTable } from '@tollgate/metering/postgres';
import type { TenantConfig } from './config/schema.js';

/** A tenant as the gateway serves it: where it comes from, and its fields as the config writes a tenant. */
export interface ServedTenant {
  id: string;
  source: 'config' | 'store';
  fields: TenantConfig;
  /** When a stored tenant last changed (ISO 8601). */
  updatedAt?: string;
}

/** The part of a node-redis v5 client a subscriber needs (as @tollgate/redis's `SubscriberLike`). */
export interface ChangeSubscriber {
  readonly isReady: boolean;
  connect(): Promise<unknown>;
  subscribe(channel: string, listener: (message: string) => void): Promise<unknown>;
  on(event: 'error' | 'ready', listener: (...args: unknown[]) => void): unknown;
  close(): Promise<unknown>;
  destroy(): void;
}

/** How a change reaches the other processes: published on a channel every process subscribes to. */
export interface TenantChanges {
  channel: string;
  publish(channel: string, message: string): Promise<unknown>;
  subscriber: ChangeSubscriber;
}

interface TenantDirectoryOptions {
  /** The config file's tenants: they win over a stored tenant of the same id. */
  configTenants: Readonly<Record<string, TenantConfig>>;
  table: TenantTable;
  /** Without it (one process), a change applies in this process only, at once. */
  changes?: TenantChanges | undefined;
  /**
   * Why a stored tenant cannot be served now (its tier gone from the config since it was stored): such a tenant is
   * left out, as an unknown one, and said at error level. @default every stored tenant served
   */
  problems?: (id: string, fields: unknown) => { problems: readonly { message: string }[] };
  /** Every process reads the whole table this often too, should a message be lost. @default 30_000 */
  resyncMs?: number;
  log?: (line: string) => void;
}

/**
 * A stored tenant as served, with its budgets as budgetGuard's specs (made once per change) and its row's version ('' when
 * written here: the next resync reads it once). Its change time is kept as a number and written out when shown: every
 * stored tenant is held by every process (10,000 tenants: 0.4 MB less than an ISO string and an object's own fields).
 */
class StoredTenant implements ServedTenant {
  readonly #updatedMs: number;

  constructor(
    readonly id: string,
    readonly fields: TenantConfig,
    updatedAt: string,
    readonly budgetSpecs: BudgetSpec[],
    readonly version: string,
  ) {
    this.#updatedMs = Date.parse(updatedAt);
  }

  get source(): 'store' {
    return 'store';
  }

  get updatedAt(): string {
    return new Date(this.#updatedMs).toISOString();
  }
}

/** Past this many tenants changed since the last read, a resync reads the whole table rather than each of them. */
const READ_WHOLE_PAST = 200;

const NO_SPECS: BudgetSpec[] = [];

/**
 * One budget of a stored tenant as budgetGuard takes it. An instance of a class, not `{ scope, id, ...budget }`: V8 keeps
 * a class's fields in the object, where a literal's spread put them in a second array (10,000 tenants: 0.4 MB).
 */
class TenantBudgetSpec {
  readonly scope = 'tenant' as const;

  constructor(
    readonly id: string,
    budget: Omit<BudgetSpec, 'scope' | 'id'>,
  ) {
    Object.assign(this, budget);
  }
}

/** A stored tenant's budgets as budgetGuard's specs for scope `tenant` (the scope a config tenant's budget counts in). */
function budgetSpecsOf(id: string, fields: TenantConfig): BudgetSpec[] {
  if (fields.budget === undefined) return NO_SPECS;
  const list = Array.isArray(fields.budget) ? fields.budget : [fields.budget];
  // The class holds the budget's own fields (Object.assign), which its declaration cannot name.
  return list.map((budget) => new TenantBudgetSpec(id, budget) as unknown as BudgetSpec);
}

/**
 * The one lookup of a tenant: the config file's by its id, else the one stored (`find`). Stored tenants are kept in
 * memory, read from the table at start; a write here applies at once in this process and is published, and every
 * other process re-reads that tenant when the message arrives (and the whole table after a reconnect and every
 * `resyncMs`).
 */
export class TenantDirectory {
  /** The config file's tenants, as served: they win over a stored tenant of the same id. */
  readonly #config: ReadonlyMap<string, ServedTenant>;
  readonly #table: TenantTable;
  readonly #changes: TenantChanges | undefined;
  readonly #log: (line: string) => void;
  readonly #problems: TenantDirectoryOptions['problems'];
  /** The rows refused, by id and change time: each said once. */
  readonly #refused = new Set<string>();
  /** The version of each row refused: a resync reads it again only once it changed. */
  readonly #refusedVersions = new Map<string, string>();
  readonly #stored = new Map<string, StoredTenant>();
  /**
   * Changes seen (written here or announced), in all and by id: a read of the table that started before one is stale
   * when it ends, and is read again rather than applied over the change.
   */
  #generation = 0;
  readonly #changesOf = new Map<string, number>();
  /** Sent with this process's own writes: it applied them already. */
  readonly #origin = randomUUID();
  readonly #ready: Promise<void>;
  readonly #timer: NodeJS.Timeout;
  #closed = false;

  constructor(options: TenantDirectoryOptions) {
    this.#config = new Map(
      Object.entries(options.configTenants).map(([id, fields]) => [id, { id, source: 'config', fields }]),
    );
    this.#table = options.table;
    this.#changes = options.changes;
    this.#log = options.log ?? (() => undefined);
    this.#problems = options.problems;
    const subscribed = this.#changes ? this.#subscribe(this.#changes) : Promise.resolve();
    this.#ready = Promise.all([this.#reloadAll(), subscribed]).then(() => undefined);
    this.#timer = setInterval(() => void this.#reloadAll(), options.resyncMs ?? 30_000);
    this.#timer.unref();
  }

  /**
   * Resolves once the stored tenants were read and the subscription to changes stands (or could not be made within
   * 5 s); never rejects: a table that failed is logged and read again at the next resync.
   */
  ready(): Promise<void> {
    return this.#ready;
  }

  /** The one rule: the config file's tenant of this id, else the stored one. */
  find(id: string): ServedTenant | undefined {
    return this.#config.get(id) ?? this.#stored.get(id);
  }

  has(id: string): boolean {
    return this.#config.has(id) || this.#stored.has(id);
  }

  isConfigTenant(id: string): boolean {
    return this.#config.has(id);
  }

  /** The tier of tenant `id`, whichever source it comes from. */
  tierOf(id: string): string | undefined {
    return this.find(id)?.fields.tier;
  }

  /** The budgets of the caller's tenant when it is a stored one (a config tenant's are budgetGuard's static ones). */
  budgetSpecs(identity: Identity): BudgetSpec[] {
    const id = identity.tenantId;
    if (id === undefined || this.#config.has(id)) return NO_SPECS;
    return this.#stored.get(id)?.budgetSpecs ?? NO_SPECS;
  }

  /** Whether a stored tenant's shadow mode is on. */
  shadowed(id: string): boolean {
    return !this.#config.has(id) && this.#stored.get(id)?.fields.shadow === true;
  }

  /** Every tenant, the config file's and the stored ones, sorted by id. */
  all(): ServedTenant[] {
    const stored = [...this.#stored.values()].filter((tenant) => !this.#config.has(tenant.id));
    const config = [...this.#config.values()];
    return [...config, ...stored].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Stores tenant `id` whole, applies it here and tells the other processes. */
  async put(id: string, fields: TenantConfig): Promise<ServedTenant> {
    await this.#table.put(id, fields);
    this.#changed(id);
    const tenant = this.#apply({ id, fields, updatedAt: new Date().toISOString() });
    await this.#announce(id);
    return tenant!;
  }

  /** Removes stored tenant `id` here and everywhere; false when there was none. */
  async remove(id: string): Promise<boolean> {
    const removed = await this.#table.remove(id);
    this.#changed(id);
    this.#stored.delete(id);
    this.#refusedVersions.delete(id);
    if (removed) await this.#announce(id);
    return removed;
  }

  close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    const subscriber = this.#changes?.subscriber;
    if (!subscriber) return Promise.resolve();
    return subscriber.close().then(
      () => undefined,
      () => subscriber.destroy(),
    );
  }

  #apply(row: StoredTenantRow | { id: string; fields: TenantConfig; updatedAt: string }): StoredTenant | undefined {
    const version = 'version' in row ? row.version : '';
    const problems = this.#problems?.(row.id, row.fields).problems ?? [];
    this.#refusedVersions.delete(row.id);
    if (problems.length > 0) {
      this.#stored.delete(row.id);
      this.#refusedVersions.set(row.id, version);
      const seen = `${row.id}\n${row.updatedAt}`;
      if (!this.#refused.has(seen)) {
        this.#refused.add(seen);
        const why = problems.map((problem) => problem.message).join('; ');
        this.#log(`tollgate proxy: the stored tenant "${row.id}" is not served: ${why}`);
      }
      return undefined;
    }
    const fields = row.fields as TenantConfig;
    const tenant = new StoredTenant(row.id, fields, row.updatedAt, budgetSpecsOf(row.id, fields), version);
    this.#stored.set(row.id, tenant);
    return tenant;
  }

  async #announce(id: string): Promise<void> {
    if (!this.#changes) return;
    const { channel, publish } = this.#changes;
    // The write is stored: a publish that fails is made good by the next resync, not refused to the operator.
    await publish(channel, JSON.stringify({ id, from: this.#origin })).catch((error: unknown) =>
      this.#log(`tollgate proxy: a tenant change was not published: ${String(error)}`),
    );
  }

  #changed(id: string): void {
    this.#generation++;
    this.#changesOf.set(id, (this.#changesOf.get(id) ?? 0) + 1);
  }

  /**
   * Reads what changed in the table since the last read: the versions of every row, then each changed row (the whole
   * table at start, or past READ_WHOLE_PAST changes). Every process does it every `resyncMs`: at 10,000 tenants, reading
   * them all each time made 10,000 tenants' objects anew in every process (bench/scale.ts).
   */
  async #reloadAll(attempts = 3): Promise<void> {
    if (this.#closed) return;
    try {
      const at = this.#generation;
      const versions = this.#stored.size === 0 ? undefined : await this.#table.versions();
      const changed = versions?.filter(({ id, version }) => this.#versionOf(id) !== version);
      const rows =
        changed === undefined || changed.length > READ_WHOLE_PAST
          ? await this.#table.list()
          : (await Promise.all(changed.map(({ id }) => this.#table.get(id)))).filter((row) => row !== undefined);
      // A change meanwhile was applied already: read again; under constant changes, their messages keep this current.
      if (at !== this.#generation) return attempts > 1 ? this.#reloadAll(attempts - 1) : undefined;
      const seen = new Set((versions ?? rows).map((row) => row.id));
      for (const id of this.#stored.keys()) if (!seen.has(id)) this.#stored.delete(id);
      for (const id of this.#refusedVersions.keys()) if (!seen.has(id)) this.#refusedVersions.delete(id);
      for (const row of rows) if (this.#versionOf(row.id) !== row.version) this.#apply(row);
    } catch (error) {
      this.#log(`tollgate proxy: the stored tenants could not be read: ${String(error)}`);
    }
  }

  /** The version of the row last read of tenant `id`, served or refused; undefined when none was. */
  #versionOf(id: string): string | undefined {
    return this.#stored.get(id)?.version ?? this.#refusedVersions.get(id);
  }

  async #reloadOne(id: string): Promise<void> {
    this.#changed(id);
    const at = this.#changesOf.get(id);
    try {
      const row = await this.#table.get(id);
      // A later change of this tenant is read by its own call.
      if (this.#changesOf.get(id) !== at) return;
      if (row) this.#apply(row);
      else this.#stored.delete(id);
    } catch (error) {
      this.#log(`tollgate proxy: the stored tenant "${id}" could not be read: ${String(error)}`);
    }
  }

  #subscribe({ channel, subscriber }: TenantChanges): Promise<void> {
    const onMessage = (message: string) => {
      let change: { id?: unknown; from?: unknown };
      try {
        change = JSON.parse(message) as typeof change;
      } catch {
        return void this.#reloadAll();
      }
      if (change.from === this.#origin) return;
      if (typeof change.id === 'string') void this.#reloadOne(change.id);
      else void this.#reloadAll();
    };
    let subscribed = false;
    subscriber.on('error', () => undefined);
    // node-redis resubscribes by itself after a reconnect; what was published meanwhile is lost: read everything again.
    subscriber.on('ready', () => {
      if (subscribed) void this.#reloadAll();
    });
    const subscribing = subscriber
      .connect()
      .then(() => subscriber.subscribe(channel, onMessage))
      .then(
        () => {
          subscribed = true;
          return this.#reloadAll();
        },
        (error: unknown) => this.#log(`tollgate proxy: no subscription to tenant changes: ${String(error)}`),
      );
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<void>((resolve) => (timer = setTimeout(resolve, 5_000)));
    return Promise.race([subscribing, waited]).finally(() => clearTimeout(timer));
  }
}
