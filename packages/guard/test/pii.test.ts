// What the guardrails take for personal data: e-mail addresses, phone numbers and Luhn-valid card numbers, masked;
// years, prices, dates, ids and plain numbers left as they are, in any script around them.
import { describe, expect, it } from '@jest/globals';
import { maskPii } from '../src/pii.js';
import { noPii, passesLuhn } from '../src/pii.js';
import type { PiiCounts } from '../src/pii.js';

function masked(text: string): { text: string; counts: PiiCounts } {
  const counts = noPii();
  return { text: maskPii(text, counts), counts };
}

describe('passesLuhn', () => {
  it.each(['4111111111111111', '5555555555554444', '378282246310005', '6011111111111117', '0'])('passes %s', (digits) =>
    expect(passesLuhn(digits)).toBe(true),
  );
  it.each(['4111111111111112', '1234567812345678', '378282246310006'])('fails %s', (digits) =>
    expect(passesLuhn(digits)).toBe(false),
  );
});

describe('e-mail addresses', () => {
  it.each([
    ['write to taro@example.com today', 'write to [EMAIL] today'],
    ['JANE.DOE+tag@mail.example.co.uk.', '[EMAIL].'],
    ['<a.b_c-d@sub-domain.example.io>', '<[EMAIL]>'],
    ['...bob@example.org', '...[EMAIL]'],
    ['two: a@example.com,b@example.net', 'two: [EMAIL],[EMAIL]'],
  ])('masks %j', (text, expected) => expect(masked(text).text).toBe(expected));

  it.each(['a@b', 'user@localhost', '@handle and @@', 'x@y.z', 'price @ 5.00', 'email@', 'ends with @example.com'])(
    'leaves %j (no local part, or no domain with a top-level label of two letters or more)',
    (text) => expect(masked(text)).toEqual({ text, counts: { email: 0, phone: 0, card: 0 } }),
  );

  it('reads only ASCII around the @: text in other scripts stays', () => {
    expect(masked('メールはtaro@example.comです').text).toBe('メールは[EMAIL]です');
    expect(masked('راسلني على ahmed@example.ae شكرا').text).toBe('راسلني على [EMAIL] شكرا');
  });
});

describe('phone numbers', () => {
  it.each([
    '+1 (415) 555-2671',
    '+14155552671',
    '+1-415-555-2671',
    '+1.415.555.2671',
    '+44 20 7946 0958',
    '+44 (0)20 7946 0958',
    '+33 1 23 45 67 89',
    '+81-3-1234-5678',
    '+49 30 12345678',
    '+971 50 123 4567',
    '(415) 555-2671',
    '(03) 1234-5678',
    '415-555-2671',
    '415.555.2671',
    '415 555 2671',
    '020 7946 0958',
    '03-1234-5678',
    '090-1234-5678',
    '06 12 34 56 78',
    '0412 345 678',
  ])('masks %s', (phone) => {
    expect(masked(`call ${phone} now`)).toEqual({
      text: 'call [PHONE] now',
      counts: { email: 0, phone: 1, card: 0 },
    });
  });

  it.each([
    'In 2024 revenue was $1,299.99, up 12%.',
    'years 2023-2024 and 1999 - 2000',
    'on 2024-01-15 at 10:30:00',
    'order id 1234567890 and 98765432',
    'pi is 3.14159265358979',
    'timestamp 1700000000000',
    'version 1.2.3456.7890',
    'sizes 10 20 30 40 50',
    'a short +1234567',
    'ISBN 978-3-16-148410-0',
    'local 555-2671',
    'id_4155552671 and x4155552671',
  ])('leaves %j', (text) => expect(masked(text)).toEqual({ text, counts: { email: 0, phone: 0, card: 0 } }));

  it('finds several in one run of numbers, and one beside other numbers', () => {
    expect(masked('415-555-2671 415-555-2672 then 2024 (415) 555-2673.').text).toBe(
      '[PHONE] [PHONE] then 2024 [PHONE].',
    );
  });

  it('reads ASCII digits in any script around them', () => {
    expect(masked('電話は03-1234-5678、携帯090-1234-5678です').text).toBe('電話は[PHONE]、携帯[PHONE]です');
    expect(masked('اتصل بي على +971 50 123 4567 الآن').text).toBe('اتصل بي على [PHONE] الآن');
  });
});

describe('card numbers', () => {
  it.each(['4111 1111 1111 1111', '4111-1111-1111-1111', '4111111111111111', '3782 822463 10005', '5555555555554444'])(
    'masks %s (Luhn-valid)',
    (card) => {
      expect(masked(`pay with ${card}.`)).toEqual({
        text: 'pay with [CARD].',
        counts: { email: 0, phone: 0, card: 1 },
      });
    },
  );

  it.each([
    'pay with 4111 1111 1111 1112',
    'serial 1234567812345670',
    'a 20-digit 41111111111111111111 number',
    'ms 1700000000000',
  ])('leaves %j (not Luhn-valid, too long, or not starting with 2-6)', (text) =>
    expect(masked(text)).toEqual({ text, counts: { email: 0, phone: 0, card: 0 } }),
  );
});

describe('together', () => {
  it('masks each kind once and counts it, leaving the rest of the text', () => {
    const { text, counts } = masked(
      'Hi, I am Ana (ana@example.com, +34 612 34 56 78). Card 5555 5555 5555 4444, exp 12/27, order 2024-118.',
    );
    expect(text).toBe('Hi, I am Ana ([EMAIL], [PHONE]). Card [CARD], exp 12/27, order 2024-118.');
    expect(counts).toEqual({ email: 1, phone: 1, card: 1 });
  });

  it('gives back the same string when there is nothing to mask', () => {
    const text = 'こんにちは 2024年 の報告書。مرحبا ٣ 👋🏽';
    expect(maskPii(text, noPii())).toBe(text);
  });
});
