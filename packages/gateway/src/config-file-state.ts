// Whether the files a running gateway re-reads (its config file, a data directory's keys.json) were last taken whole:
// one that did not validate is said at error level, on /healthz (degraded) and by `tollgate_config_file_valid`.
import { configKeyFromRecord, keysWithRemovals } from '@tollgate/auth';
import type { ApiKeyRecord } from '@tollgate/core/kit';
import { configProblems } from './config/index.js';
import type { KeyConfig, ProxyConfig } from './config/index.js';

/** How the last change of a file was taken. */
export interface ConfigFileStatus {
  path: string;
  /** `valid`: taken whole. `invalid`: its revocations, expiries and deletions taken, the rest waiting. `unreadable`: nothing taken. */
  status: 'valid' | 'invalid' | 'unreadable';
  /** What is wrong with it (none when valid). */
  problems: readonly string[];
  /** ISO time of the change that put it in this state. */
  since: string;
}

/** The state of every re-read file of one gateway. */
export interface ConfigFileStates {
  /** The files whose last change was not taken whole. */
  failing(): ConfigFileStatus[];
  /** Every file read, for the metric. */
  all(): ConfigFileStatus[];
  note(status: Omit<ConfigFileStatus, 'since'>): void;
}

export function createConfigFileStates(log: { error(line: string): void; info(line: string): void }): ConfigFileStates {
  const files = new Map<string, ConfigFileStatus>();
  return {
    failing: () => [...files.values()].filter((file) => file.status !== 'valid'),
    all: () => [...files.values()],
    note(next) {
      const previous = files.get(next.path);
      const changed = previous?.status !== next.status || previous.problems.join('\n') !== next.problems.join('\n');
      files.set(next.path, { ...next, since: changed || !previous ? new Date().toISOString() : previous.since });
      if (next.status === 'valid') {
        if (previous && previous.status !== 'valid')
          log.info(`tollgate proxy: ${next.path} validates again; taken whole`);
        return;
      }
      log.error(
        next.status === 'invalid'
          ? `tollgate proxy: ${next.path} changed but does not validate; its revocations, expiries and deletions are in force, its other changes wait for a valid file (and a restart would refuse it): ${next.problems.join('; ')}`
          : `tollgate proxy: ${next.path} changed but cannot be read; nothing of it was taken, the keys read before stay: ${next.problems.join('; ')}`,
      );
    },
  };
}

/** What a gateway does with a changed config file's text. */
export interface ConfigFileReload {
  status: ConfigFileStatus['status'];
  problems: readonly string[];
  /** The keys now in force from the file. */
  keys: readonly KeyConfig[];
  /** The file's config, when it validates whole. */
  config?: ProxyConfig;
}

/** A running key record back in the config's form (what reloadKeys takes). */
const toConfigKey = (record: ApiKeyRecord) => configKeyFromRecord(record) as KeyConfig;

/**
 * The config keys a changed config file puts in force: all of its keys when the whole file validates (other changes
 * need a restart), else the running keys less what the file takes away (keysWithRemovals), else (not JSON) the
 * running keys as they are.
 */
export function keysFromChangedConfig(text: string, running: readonly ApiKeyRecord[]): ConfigFileReload {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    return {
      status: 'unreadable',
      problems: [`not JSON: ${(error as Error).message}`],
      keys: running.map(toConfigKey),
    };
  }
  const { problems, config } = configProblems(parsed);
  if (config) return { status: 'valid', problems: [], keys: config.keys ?? [], config };
  const raw = typeof parsed === 'object' && parsed !== null ? (parsed as { keys?: unknown }).keys : undefined;
  return { status: 'invalid', problems, keys: keysWithRemovals(running, raw).map(toConfigKey) };
}
