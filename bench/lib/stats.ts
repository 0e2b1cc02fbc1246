// Small statistics and formatting helpers shared by every benchmark.

/** The q-quantile (0..1) of unsorted samples, by nearest rank; NaN when empty. */
export function quantile(samples: ArrayLike<number>, q: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = Float64Array.from(samples).sort();
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank]!;
}

export function mean(samples: readonly number[]): number {
  let sum = 0;
  for (const sample of samples) sum += sample;
  return sum / samples.length;
}

export function median(samples: ArrayLike<number>): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = Float64Array.from(samples).sort();
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/**
 * A distribution-free 95% interval of the median: the order statistics k and n - k + 1 with k = ⌊(n − 1.96√n) / 2⌋
 * (the sign test's bounds); with fewer than 6 samples, their whole range.
 */
export function medianInterval(samples: ArrayLike<number>): [low: number, high: number] {
  if (samples.length === 0) return [Number.NaN, Number.NaN];
  const sorted = Float64Array.from(samples).sort();
  const n = sorted.length;
  const k = Math.max(1, Math.floor((n - 1.96 * Math.sqrt(n)) / 2));
  return n < 6 ? [sorted[0]!, sorted[n - 1]!] : [sorted[k - 1]!, sorted[n - k]!];
}

/** Grows without copying on every push: latency samples can reach a few hundred thousand per case. */
export class SampleBuffer {
  private data = new Float64Array(4096);
  length = 0;

  push(value: number): void {
    if (this.length === this.data.length) {
      const bigger = new Float64Array(this.data.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    this.data[this.length++] = value;
  }

  values(): Float64Array {
    return this.data.subarray(0, this.length);
  }
}

export function fmtNumber(value: number, digits = 0): string {
  if (!Number.isFinite(value)) return 'n/a';
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** Milliseconds with a precision that suits their size. */
export function fmtMs(value: number): string {
  if (!Number.isFinite(value)) return 'n/a';
  if (value >= 100) return `${value.toFixed(0)} ms`;
  if (value >= 10) return `${value.toFixed(1)} ms`;
  if (value >= 1) return `${value.toFixed(2)} ms`;
  return `${value.toFixed(3)} ms`;
}

/** A difference with its sign: `+1.2 µs`, `-0.4 µs`. */
export function fmtSigned(value: number, unit = 'µs', digits = 1): string {
  return `${value >= 0 ? '+' : ''}${fmtNumber(value, digits)}${unit ? ` ${unit}` : ''}`;
}

export function fmtRatio(value: number): string {
  return Number.isFinite(value) ? `${value.toFixed(2)}×` : 'n/a';
}

export function fmtBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return 'n/a';
  const sign = bytes < 0 ? '-' : '';
  const abs = Math.abs(bytes);
  if (abs >= 1024 * 1024) return `${sign}${(abs / 1024 / 1024).toFixed(1)} MiB`;
  if (abs >= 1024) return `${sign}${(abs / 1024).toFixed(1)} KiB`;
  return `${sign}${abs} B`;
}

/** The lines a section ends with when some of its cases could not run. */
export function notMeasured(missing: readonly string[]): string[] {
  return missing.length > 0 ? ['', 'Not measured:', ...missing.map((m) => `- ${m}`)] : [];
}

/** A GitHub-flavoured markdown table. */
export function table(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

/** The share of paired rounds left out at each end (a neighbour's burst, a stray page fault). */
export const TRIM = 0.1;
const BOOTSTRAP_RESAMPLES = 1_000;

/** The mean of the values between the TRIM and 1 - TRIM quantiles. */
export function trimmedMean(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const cut = Math.floor(sorted.length * TRIM);
  let sum = 0;
  for (let i = cut; i < sorted.length - cut; i++) sum += sorted[i]!;
  return sum / (sorted.length - 2 * cut);
}

/** A 95% interval of the trimmed mean, resampling the rounds (a fixed seed: the same samples give the same interval). */
export function bootstrapInterval(values: readonly number[]): [number, number] {
  let seed = 0x2545f491;
  const random = () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) / 2 ** 32;
  };
  const estimates: number[] = [];
  const resample = new Array<number>(values.length);
  for (let r = 0; r < BOOTSTRAP_RESAMPLES; r++) {
    for (let i = 0; i < values.length; i++) resample[i] = values[Math.floor(random() * values.length)]!;
    estimates.push(trimmedMean(resample));
  }
  return [quantile(estimates, 0.025), quantile(estimates, 0.975)];
}

/** Median and quartiles of a list, formatted: `m (q1, q3)`. */
export function withQuartiles(values: number[], digits = 1): string {
  return `${fmtNumber(median(values), digits)} (${fmtNumber(quantile(values, 0.25), digits)}, ${fmtNumber(quantile(values, 0.75), digits)})`;
}

/** The answers outside 2xx among statuses counted by code. */
export function non2xx(statuses: Record<string, number>): number {
  let sum = 0;
  for (const [code, n] of Object.entries(statuses)) if (!code.startsWith('2')) sum += n;
  return sum;
}
