// A family's answer forms agree with each other: an answer written as its stream, in one delta or a token a delta (as the
// mock streams), assembles back into the same JSON answer, and the adapter reads the same usage from both forms.
import { describe, expect, it } from '@jest/globals';
import { adapterFor } from '@tollgate/providers';
import { answerFormsOf } from '@tollgate/providers/answers';
import type { ProviderApi } from '@tollgate/core';
import { anthropicAnswer, anthropicEvents } from '../src/anthropic-messages/answer.js';
import type { PlainAnswer, SseMessage } from '../src/answer-types.js';
import { chatAnswer, chatEvents } from '../src/openai-chat/answer.js';
import { responsesAnswer, responsesEvents } from '../src/openai-responses/answer.js';

const plain: PlainAnswer = {
  model: 'm',
  text: 'This is the gateway',
  inputTokens: 12,
  outputTokens: 4,
  truncated: true,
};
const words = (text: string) => text.split(/(?= )/);

/** Chat Completions JSON without the message's empty `annotations`, which no chunk carries. */
function chatJson(): Record<string, unknown> {
  const answer = chatAnswer(plain);
  delete (answer.choices as { message: Record<string, unknown> }[])[0]!.message.annotations;
  return answer;
}

const families: [ProviderApi, Record<string, unknown>, (answer: Record<string, unknown>) => SseMessage[]][] = [
  ['openai.chat', chatJson(), (answer) => chatEvents(answer, { deltas: words })],
  [
    'openai.responses',
    responsesAnswer(plain, { max_output_tokens: 4 }),
    (answer) => responsesEvents(answer, { deltas: words }),
  ],
  ['anthropic.messages', anthropicAnswer(plain), (answer) => anthropicEvents(answer, { deltas: words })],
];

describe.each(families)('%s', (api, answer, byWords) => {
  const forms = answerFormsOf(adapterFor(api).family)!;
  const data = (events: SseMessage[]) =>
    events.map(({ data }) => ({ data: typeof data === 'string' ? data : JSON.stringify(data) }));

  it('is a complete answer, and its stream assembles back into it, in one delta or a word a delta', () => {
    expect(forms.isComplete!(answer)).toBe(true);
    const whole = forms.toEvents!(answer);
    const split = byWords(answer);
    expect(split.length).toBeGreaterThan(whole.length);
    expect(forms.fromEvents!(data(whole))).toEqual(answer);
    expect(forms.fromEvents!(data(split))).toEqual(answer);
  });

  it('carries the same usage in both forms, as the adapter reads them', () => {
    const count = (text: string) => text.length;
    const fromJson = adapterFor(api).createReader();
    fromJson.onJson(answer);
    const fromStream = adapterFor(api).createReader();
    for (const { event, data } of byWords(answer))
      fromStream.onEvent(event ?? '', typeof data === 'string' ? data : JSON.stringify(data));
    expect(fromStream.result(count)).toEqual(fromJson.result(count));
    expect(fromJson.result(count)).toMatchObject({ source: 'provider', usage: { inputTokens: 12, outputTokens: 4 } });
  });
});
