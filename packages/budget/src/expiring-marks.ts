// Keys this process remembers until a time each: what it learned from the ledger and need not ask again for a while.
export class ExpiringMarks {
  readonly #until = new Map<string, number>();
  /** Past this many, the marks start over rather than grow without end. */
  readonly #max: number;

  constructor(max = 10_000) {
    this.#max = max;
  }

  /** True while `key` is marked at `now`; an expired mark is dropped. */
  has(key: string, now: number): boolean {
    const until = this.#until.get(key);
    if (until === undefined) return false;
    if (until > now) return true;
    this.#until.delete(key);
    return false;
  }

  mark(key: string, until: number): void {
    if (this.#until.size >= this.#max) this.#until.clear();
    this.#until.set(key, until);
  }

  delete(key: string): void {
    this.#until.delete(key);
  }

  clear(): void {
    this.#until.clear();
  }
}
