// TollgateError: misconfiguration found at factory time, with a stable code and a docs anchor.

/**
 * Where each code is explained: docs/errors.md at a stable URL of the repository that every package.json names (an
 * npm user has no repository checkout; @tollgate/core also ships the same file as `docs/errors.md`).
 */
const DOCS = 'https://github.com/tollgate/tollgate/blob/main/docs/errors.md';

/**
 * Thrown at construction time when options or config are wrong. `code` is stable:
 * `ERR_TG_<PACKAGE>_<NAME>`; it never changes meaning.
 */
export class TollgateError extends Error {
  override readonly name = 'TollgateError';
  readonly code: string;
  readonly docs: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    const docs = `${DOCS}#${code.toLowerCase().replace(/_/g, '-')}`;
    super(`${message} (${code}, see ${docs})`, options);
    this.code = code;
    this.docs = docs;
  }
}

/** Levenshtein distance, for "did you mean" hints on option names. */
function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(above + 1, row[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length]!;
}

/** The known name closest to `name`, if it is close enough to be a typo. */
export function closestName(name: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(name.length / 3)) + 1;
  for (const candidate of known) {
    const distance = editDistance(name.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

/** `; did you mean "x"?` when a known name is close enough to `name` to be a typo of it, else nothing. */
export function didYouMean(name: string, known: readonly string[]): string {
  const hint = closestName(name, known);
  return hint === undefined ? '' : `; did you mean "${hint}"?`;
}

/**
 * Rejects option names a factory does not know, with a "did you mean" hint.
 * `code` is the factory's own, e.g. `ERR_TG_RATELIMIT_UNKNOWN_OPTION`.
 */
export function assertKnownOptions(
  options: object | undefined,
  known: readonly string[],
  code: string,
  factory: string,
): void {
  if (options === undefined || options === null) return;
  if (typeof options !== 'object')
    throw new TollgateError(code, `${factory}() takes an options object; got ${typeof options}`);
  for (const name of Object.keys(options)) {
    if (known.includes(name)) continue;
    throw new TollgateError(
      code,
      `${factory}() has no option "${name}"${didYouMean(name, known)}. Known options: ${known.join(', ')}`,
    );
  }
}
