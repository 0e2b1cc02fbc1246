// Forecasts: where each budget's spend lands at the end of its period if it keeps its recent rate.

/** One reading of a budget's spend (nano-USD) at an instant (epoch ms). */
interface SpendSample {
  at: number;
  spent: number;
}

/** The samples of one budget period (one ledger key): a new period is a new key and starts fresh. */
interface PeriodSamples {
  /** Oldest first, a sixth of the span apart (at least a minute), none older than the span but the first. */
  samples: SpendSample[];
  /** When the period ends: the samples are dropped after it. */
  end: number;
}

/** What the forecast of one budget period reads. */
interface ForecastInput {
  /** The period's ledger key. */
  key: string;
  /** Nano-USD spent and held now. */
  spent: number;
  reserved: number;
  /** Epoch ms: now, and the start and end of the period. */
  now: number;
  start: number;
  end: number;
}

/**
 * Samples closer together than this are one sample (a status read every second does not crowd out the span), and
 * the guard's own sampling interval. Samples are kept a sixth of the span apart: at most 8 per budget period.
 */
export const SAMPLE_GAP_MS = 60_000;
/** The longest span the rate is read over: what happened in the last hour says more than last week. */
const MAX_SPAN_MS = 3_600_000;
/** The shortest span a rate is trusted over: with less, no forecast (null). */
export const MIN_SPAN_MS = 5 * 60_000;
/** Budget periods remembered at once (a few hundred bytes each); the oldest sampled is dropped past it. */
const MAX_PERIODS = 100_000;

/** The span a period's rate is read over: the last hour, or a quarter of a shorter period (an `hour`: 15 minutes). */
function forecastSpan(start: number, end: number): number {
  return Math.min(MAX_SPAN_MS, Math.max(MIN_SPAN_MS, (end - start) / 4));
}

/**
 * Keeps a few spend samples per budget period and projects its spend to the period's end:
 * forecast = spent + reserved + rate × (end − now), where rate = Δspent / Δt from the oldest sample of
 * the span to now. Null until the samples span `MIN_SPAN_MS`; spend that went down (a reset) starts over.
 */
export class SpendForecaster {
  readonly #periods = new Map<string, PeriodSamples>();
  #swept = 0;

  /** Records a reading and returns the forecast in nano-USD, or null when there is no span to read a rate over yet. */
  forecast(input: ForecastInput): number | null {
    const { now, end } = input;
    if (now >= end) return null;
    const samples = this.#record(input);
    const oldest = samples[0]!;
    const elapsed = now - oldest.at;
    if (elapsed < MIN_SPAN_MS) return null;
    const rate = Math.max(0, input.spent - oldest.spent) / elapsed;
    return Math.ceil(input.spent + input.reserved + rate * (end - now));
  }

  /** Adds `input` as a sample of its period (unless one was taken in the last minute) and drops those past the span. */
  #record({ key, spent, now, start, end }: ForecastInput): SpendSample[] {
    let period = this.#periods.get(key);
    const last = period?.samples.at(-1);
    if (!period || !last || spent < last.spent || now < last.at) {
      // New period, or the spend went back (an operator's reset), or the clock did: earlier samples say nothing now.
      if (!period) this.#remember(key, (period = { samples: [], end }), now);
      period.samples = [{ at: now, spent }];
      return period.samples;
    }
    const span = forecastSpan(start, end);
    if (now - last.at >= Math.max(SAMPLE_GAP_MS, span / 6)) period.samples.push({ at: now, spent });
    const from = now - span;
    // Keep the newest sample at or before the span's start, so the rate covers the whole span.
    let drop = 0;
    while (drop + 1 < period.samples.length && period.samples[drop + 1]!.at <= from) drop++;
    if (drop > 0) period.samples.splice(0, drop);
    return period.samples;
  }

  #remember(key: string, period: PeriodSamples, now: number): void {
    if (now - this.#swept >= SAMPLE_GAP_MS) {
      this.#swept = now;
      for (const [other, { end }] of this.#periods) if (end <= now) this.#periods.delete(other);
    }
    if (this.#periods.size >= MAX_PERIODS) this.#periods.delete(this.#periods.keys().next().value!);
    this.#periods.set(key, period);
  }

  /** Forgets a period's samples (an operator's reset or top-up changed what its spend means). */
  forget(key: string): void {
    this.#periods.delete(key);
  }
}
