// The shape every benchmark returns to bench/run.ts, which writes them into RESULTS.md.

export interface BenchContext {
  /** Fewer rounds, shorter runs, smaller counts: for development, not for RESULTS.md figures. */
  quick: boolean;
  /** Unique per run; every Redis key the bench writes starts with `tg-bench:<runId>:`. */
  runId: string;
  redisPrefix: string;
  log(message: string): void;
}

export interface TargetVerdict {
  target: string;
  /** undefined: could not be measured (the piece it needs is missing or failed). */
  holds: boolean | undefined;
  figures: string;
}

export interface SectionResult {
  title: string;
  /** Markdown, without the heading. */
  body: string;
  targets: TargetVerdict[];
  /** Plain statements drawn from the figures on where time or round trips go (listed under the targets). */
  findings?: string[];
}

export function verdictMark(holds: boolean | undefined): string {
  if (holds === undefined) return 'NOT MEASURED';
  return holds ? 'HOLDS' : 'FAILS';
}
