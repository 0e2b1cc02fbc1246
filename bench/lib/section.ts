// The shape every benchmark returns to bench/run.ts, which writes them into RESULTS.md, and a section run alone.
import { fileURLToPath } from 'node:url';
import { table } from './stats.js';

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
  /** How far the figure may be off (a median's 95% interval), when the section knows. */
  interval?: string;
  /** The machine's load average (1 minute), the more of the section's start and end: set by run.ts. */
  load?: number;
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

/** The targets as RESULTS.md lists them: one row each, its verdict in bold. */
export function targetsTable(targets: readonly TargetVerdict[]): string {
  const rows = targets.map((t) => [
    t.target,
    `**${verdictMark(t.holds)}**`,
    t.figures,
    t.interval ?? '—',
    t.load === undefined ? '—' : t.load.toFixed(1),
  ]);
  return table(['target', 'verdict', 'figures', 'interval', 'load'], rows);
}

/** True in the module `tsx` was started on: a section's file run alone (`tsx bench/abuse.ts`), not through run.ts. */
export function runAlone(moduleUrl: string): boolean {
  return process.argv[1] === fileURLToPath(moduleUrl);
}

/** The context of a section run alone: its log on stderr (stdout is the section), its keys under `tg-bench:<name>:`. */
export function aloneContext(name: string, quick: boolean): BenchContext {
  return {
    quick,
    runId: name,
    redisPrefix: `tg-bench:${name}:`,
    log: (message) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}`),
  };
}

/** A section as RESULTS.md has it: its heading, its body and the table of its targets. */
export function sectionText(section: SectionResult): string {
  return [`## ${section.title}`, '', section.body, '', targetsTable(section.targets)].join('\n');
}
