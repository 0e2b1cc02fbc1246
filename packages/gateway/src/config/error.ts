// The error of a config that cannot run: every problem found, each naming its field.
import { TollgateError } from '@tollgate/core';

/** A config that cannot run: every problem found, each naming its field (`tiers.free.requestsPerMinute ...`). */
export class ConfigError extends TollgateError {
  readonly issues: readonly string[];

  constructor(issues: string | readonly string[]) {
    const list = typeof issues === 'string' ? [issues] : issues;
    super(
      'ERR_TG_PROXY_INVALID_CONFIG',
      list.length === 1
        ? `Invalid proxy config: ${list[0]}`
        : `Invalid proxy config: ${list.length} problems:\n${list.map((issue) => `  - ${issue}`).join('\n')}\n`,
    );
    this.issues = list;
  }
}
