// Personal data in prompt text: e-mail addresses, phone numbers and card numbers, found and masked in one pass each.

/** The kinds of personal data the guardrails find, in the order a refusal names them. */
export const PII_KINDS = ['email', 'phone', 'card'] as const;
export type PiiKind = (typeof PII_KINDS)[number];

/** What each kind is replaced with. */
const PII_MASKS: Readonly<Record<PiiKind, string>> = { email: '[EMAIL]', phone: '[PHONE]', card: '[CARD]' };

/** How many of each kind were found (and masked) so far. */
export type PiiCounts = Record<PiiKind, number>;

export function noPii(): PiiCounts {
  return { email: 0, phone: 0, card: 0 };
}

/** True when the digits (a string of 0-9 only) pass the Luhn check every card number passes. */
export function passesLuhn(digits: string): boolean {
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let digit = digits.charCodeAt(i) - 48;
    if (double) {
      digit *= 2;
      if (digit > 9) digit -= 9;
    }
    sum += digit;
    double = !double;
  }
  return sum % 10 === 0;
}

// E-mail: found from each `@` (indexOf is far cheaper than a pattern that could start anywhere). The local part is
// the ASCII characters addresses use, read back from the `@`; the domain two or more ASCII labels, the last of 2-63
// letters. Text around it in any script stays: `メールはtaro@example.comです` masks `taro@example.com` only.
const LOCAL_PART = new Uint8Array(128);
for (const char of "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.!#$%&'*+/=?^_`{|}~-")
  LOCAL_PART[char.charCodeAt(0)] = 1;
const MAX_LOCAL_PART = 64;
const DOMAIN = /(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?![A-Za-z0-9-])/y;

function maskEmails(text: string, counts: PiiCounts): string {
  let at = text.indexOf('@');
  if (at === -1) return text;
  let out = '';
  /** Where the text not yet copied to `out` starts. */
  let from = 0;
  while (at !== -1) {
    let start = at;
    while (start > from && at - start < MAX_LOCAL_PART && LOCAL_PART[text.charCodeAt(start - 1)] === 1) start--;
    // A local part starts with no dot (`...bob@x.io` is `bob@x.io`).
    while (start < at && text.charCodeAt(start) === 46) start++;
    DOMAIN.lastIndex = at + 1;
    if (start < at && DOMAIN.test(text)) {
      out += text.slice(from, start) + PII_MASKS.email;
      from = DOMAIN.lastIndex;
      counts.email++;
      at = text.indexOf('@', from);
    } else {
      at = text.indexOf('@', at + 1);
    }
  }
  return from === 0 ? text : out + text.slice(from);
}

// Numbers: one scan finds runs of ASCII digits joined by spaces, dots, dashes and parentheses (at least 8 characters,
// not touching a letter, a digit or `_` on either side); only those runs are read further, a few words at a time.
const NUMBER_RUN = /(?<![\w+])\+?\(?\d[\d ().-]{6,}\d(?!\w)/g;
/** A phone or card number spans at most this many space-separated words (`+33 1 23 45 67 89` is six). */
const MAX_WORDS = 7;
const MIN_DIGITS = 8;
const MAX_DIGITS = 19;
/** `+`, a country code, then groups split by one space, dot or dash, one of them in parentheses maybe. */
const INTERNATIONAL = /^\+(?:\d{1,3}(?:[ .-]?\(\d{1,5}\)\d{0,8}|[ .-]\d{1,8})+|\d{7,15})$/;
/** `(415) 555-2671`, `415-555-2671` (one separator throughout), or a number from a trunk 0: `020 7946 0958`. */
const NATIONAL =
  /^(?:\(\d{2,5}\)[ -]?\d{2,4}(?:[ .-]\d{2,4}){1,2}|\d{3}([ .-])\d{3}\1\d{4}|0\d{1,4}(?:[ -]\d{1,8}){1,4})$/;
/** Digits, each pair split by one space or dash at most, starting with 2-6 (the card networks' first digits). */
const CARD = /^[2-6](?:[ -]?\d){12,18}$/;

function countDigits(text: string): number {
  let digits = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code >= 48 && code <= 57) digits++;
  }
  return digits;
}

/** What one candidate (a run, or a few words of one) holding `digits` digits is: a phone or a card number, or neither. */
function numberKind(text: string, digits: number): PiiKind | undefined {
  if (digits < MIN_DIGITS || digits > MAX_DIGITS) return undefined;
  if (text.charCodeAt(0) === 43) return digits <= 15 && INTERNATIONAL.test(text) ? 'phone' : undefined;
  if (digits >= 13 && CARD.test(text) && passesLuhn(text.replace(/\D/g, ''))) return 'card';
  return digits >= 9 && digits <= 12 && NATIONAL.test(text) ? 'phone' : undefined;
}

/**
 * A run of digits with its phone and card numbers masked, or undefined when it holds none. Its words are read left
 * to right, each time the longest stretch of up to MAX_WORDS of them that is a number (a run may hold several,
 * `415-555-2671 415-555-2672`, or a number beside others, `2024 (415) 555-2671`).
 */
function maskNumberRun(run: string, counts: PiiCounts): string | undefined {
  // One word, the usual run (an order number, a date range, a phone number without spaces): read whole.
  if (run.indexOf(' ') === -1) {
    const kind = numberKind(run, countDigits(run));
    if (kind === undefined) return undefined;
    counts[kind]++;
    return PII_MASKS[kind];
  }
  const words = run.split(' ');
  const digits = words.map(countDigits);
  const parts: string[] = [];
  let masked = false;
  for (let first = 0; first < words.length;) {
    const limit = Math.min(words.length, first + MAX_WORDS);
    let total = 0;
    for (let i = first; i < limit; i++) total += digits[i]!;
    let end = limit;
    let kind: PiiKind | undefined;
    for (; end > first; total -= digits[--end]!) {
      if (total < MIN_DIGITS) break;
      if ((kind = numberKind(words.slice(first, end).join(' '), total)) !== undefined) break;
    }
    if (kind === undefined) {
      parts.push(words[first]!);
      first++;
    } else {
      parts.push(PII_MASKS[kind]);
      counts[kind]++;
      masked = true;
      first = end;
    }
  }
  return masked ? parts.join(' ') : undefined;
}

function maskNumbers(text: string, counts: PiiCounts): string {
  NUMBER_RUN.lastIndex = 0;
  let run = NUMBER_RUN.exec(text);
  if (run === null) return text;
  let out = '';
  let from = 0;
  for (; run !== null; run = NUMBER_RUN.exec(text)) {
    const masked = maskNumberRun(run[0], counts);
    if (masked === undefined) continue;
    out += text.slice(from, run.index) + masked;
    from = run.index + run[0].length;
  }
  return from === 0 ? text : out + text.slice(from);
}

/** `text` with its e-mail addresses, phone numbers and card numbers masked (the same string when it has none), counted into `counts`. */
export function maskPii(text: string, counts: PiiCounts): string {
  return maskNumbers(maskEmails(text, counts), counts);
}
