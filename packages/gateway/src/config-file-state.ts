// Whether the files a running gateway re-reads (its config file, a data directory's keys.json) were last taken whole:
// one that did not validate is said at error level, on /healthz (degraded) and by `tollgate_config_file_valid`.

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
