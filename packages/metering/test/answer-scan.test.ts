import { describe, expect, it } from '@jest/globals';
import { memberValueRange, topLevelFields } from '../src/answer-scan.js';

const FIELDS = ['model', 'usage'];

describe('topLevelFields (usage found in a JSON answer without parsing it whole)', () => {
  it('parses only the wanted top-level members, whatever strings and objects come before them', () => {
    const text = JSON.stringify(
      {
        id: 'x',
        choices: [
          { message: { content: 'ends in a backslash \\', usage: { prompt_tokens: 5 } } },
          '"usage": {}',
          ['[', '{'],
        ],
        model: 'gpt-4o',
        usage: { prompt_tokens: 12, completion_tokens: 3 },
        after: null,
      },
      null,
      2,
    );
    expect(topLevelFields(text, FIELDS)).toEqual({
      model: 'gpt-4o',
      usage: { prompt_tokens: 12, completion_tokens: 3 },
    });
    expect(topLevelFields('  {"usage": {"a": 1}, "usage": {"a": 2}}\n', FIELDS)).toEqual({ usage: { a: 2 } });
    expect(topLevelFields('{"choices": []}', FIELDS)).toEqual({});
  });

  it('reads a string value as JSON.parse does, escapes and all', () => {
    expect(topLevelFields('{"model": "gpt-4o" , "usage": {}}', FIELDS)).toEqual({ model: 'gpt-4o', usage: {} });
    expect(topLevelFields('{"model":"gpt\\u002d4o \\"x\\""}', FIELDS)).toEqual({ model: 'gpt-4o "x"' });
    expect(topLevelFields('{"model":""}', FIELDS)).toEqual({ model: '' });
    // A raw control character is no JSON: the scan cannot vouch for the text.
    expect(topLevelFields('{"model":"a\tb"}', FIELDS)).toBeUndefined();
  });

  it('is unsure (undefined) of anything but one whole object', () => {
    for (const text of [
      '[{"usage": {"a": 1}}]',
      '{"usage": {"a": 1}',
      '{"usage": {"a": 1}} {"usage": {"a": 2}}',
      '{"usage": {"a": 1,}}',
      '{"model": "gpt-4o", "usage": {"a": "unterminated}}',
      '{"usage"}',
      '',
    ]) {
      expect(topLevelFields(text, FIELDS)).toBeUndefined();
    }
  });
});

describe('memberValueRange (where the meter writes cost_usd into a JSON answer)', () => {
  const range = (text: string, name: string) => {
    const bytes = Buffer.from(text);
    const found = memberValueRange(bytes, name);
    return found && bytes.toString('utf8', found[0], found[1] + 1);
  };

  it("finds the top-level member's object, braces included, the last one where it repeats", () => {
    expect(range('{"model":"m","usage": {"a":1} ,"x":[{"usage":{}}]}', 'usage')).toBe('{"a":1}');
    expect(range('{"usage":{"a":1},"usage":{ }}', 'usage')).toBe('{ }');
    expect(range('{"usageMetadata":{"promptTokenCount":4}}', 'usageMetadata')).toBe('{"promptTokenCount":4}');
  });

  it('finds nothing where the member is absent, nested, no object, or the answer is not one object', () => {
    expect(range('{"choices":[{"usage":{}}]}', 'usage')).toBeUndefined();
    expect(range('{"usage":null}', 'usage')).toBeUndefined();
    expect(range('{"usage":[1]}', 'usage')).toBeUndefined();
    expect(range('{"usage":{"a":1}', 'usage')).toBeUndefined();
    expect(range('[{"usage":{}}]', 'usage')).toBeUndefined();
  });
});
