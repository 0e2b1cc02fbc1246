// A stream's grant and the hold that follows its output past it: the verdict on each event (go on, extend the hold,
// stop after the event, cut before it), asking the request's holders for more where the output needs it.
import type { TollgateContext } from '@tollgate/core';
import type { OutputCounter, UsageReader } from '@tollgate/providers';

/** How one model's output is counted: for the bill when no usage comes, for the hold and for the hard stop. */
export interface OutputCounting {
  /**
   * A count that never under-states the provider's: the bill when no usage comes, and what the hold follows. The
   * provider's own tokenizer's count, else `upperOutputTokens`.
   */
  countOutput: OutputCounter;
  /** The hard stop's count, unrounded, that never over-states the provider's: exact, else `lowerOutputTokens`. */
  stopCount: OutputCounter;
  /** The count is the provider's own tokenizer's. */
  own: boolean;
}

/**
 * What the output read so far asks of a stream: go on; more room (`extend`); end it after the event that passed the
 * grant, which its hold covers (`stop`); or end it before that event, which nothing holds (`cut`).
 */
export type Verdict = 'pass' | 'extend' | 'stop' | 'cut';
/** A verdict once the hold was extended as far as it could be. */
export type Outcome = Exclude<Verdict, 'extend'>;

/** The output of one stream against its grant (cap x choices) and its hold. */
export class OutputHold {
  /** Output tokens held for the stream: its grant, and what extensions added as it ran past it. */
  tokens: number;
  /** Extensions asked for (granted or not). */
  extensions = 0;

  constructor(
    readonly grant: number,
    private readonly output: UsageReader['output'],
    /** The counting of the model that answered. */
    private readonly counting: OutputCounting,
    /** Events go out whole: one can wait for an extension. */
    private readonly wholeEvents: boolean,
    private readonly ctx: TollgateContext,
  ) {
    this.tokens = grant;
  }

  /**
   * What the output so far asks of the stream. The hold follows a count that cannot under-state the output
   * (`countOutput`): past what is held, more is asked for (only where events go out whole, so that one can wait).
   * The stream ends only when a count that cannot over-state it (`stopCount`) passes the grant, or more is refused.
   */
  private judge(): Verdict {
    const { output, grant } = this;
    const held = this.tokens;
    // Far below the hold (and, before any extension, below the grant: the lower count is under the upper one).
    if (output.boundOf(output.hold) <= held && (held === grant || output.tokenBound <= grant)) return 'pass';
    const { counting } = this;
    const over = this.wholeEvents && output.passes(held, counting.countOutput, output.hold);
    if ((over || held > grant || !this.wholeEvents) && output.passes(grant, counting.stopCount))
      return over ? 'cut' : 'stop';
    return over ? 'extend' : 'pass';
  }

  /** The verdict, once the hold was extended as far as the output needs (at once where the holders answer at once). */
  verdict(): Outcome | Promise<Outcome> {
    const verdict = this.judge();
    if (verdict !== 'extend') return verdict;
    const needed = Math.ceil(this.output.countOf(this.counting.countOutput) - this.tokens);
    this.extensions++;
    // Twice what is held, or what the output needs: an upstream that ignores its cap costs a few round trips.
    const granted = this.ctx.extendOutput(Math.max(needed, this.tokens), needed);
    if (typeof granted === 'number') return this.#extended(granted);
    return granted.then(
      (tokens) => this.#extended(tokens),
      (): Outcome => 'cut',
    );
  }

  #extended(tokens: number): Outcome | Promise<Outcome> {
    if (tokens <= 0) return 'cut';
    this.tokens += tokens;
    return this.verdict();
  }
}
