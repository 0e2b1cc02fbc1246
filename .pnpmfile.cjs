// What `pnpm pack` and `pnpm publish` write into a package's published package.json. Only dist is published (the
// `files` of each package), so the workspace's "source" export condition, which points at src/*.ts, is dropped: left
// in, it would send a consumer that resolves a "source" condition of its own to files that are not there.
/* global module */
'use strict';

/** `exports` without any "source" condition, at any depth. */
function withoutSourceCondition(value) {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
  return Object.fromEntries(
    Object.entries(value)
      .filter(([key]) => key !== 'source')
      .map(([key, target]) => [key, withoutSourceCondition(target)]),
  );
}

module.exports = {
  hooks: {
    beforePacking(manifest) {
      if (manifest.exports) manifest.exports = withoutSourceCondition(manifest.exports);
      return manifest;
    },
  },
};
