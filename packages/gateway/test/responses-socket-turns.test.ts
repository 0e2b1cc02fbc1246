// What a Responses WebSocket keeps between responses when bridged to HTTP: a continued turn is sent whole, a warm-up
// answered with no output and no usage, and only a finished response's event closes a turn.
import { describe, expect, it } from '@jest/globals';
import { continuedBody, finishedTurn, warmUp } from '../src/responses-socket-turns.js';

const user = (content: string) => ({ type: 'message', role: 'user', content });

describe('a Responses WebSocket turn', () => {
  it('continues the last turn by its id: its input, its output, then the new input, without the id', () => {
    const last = { id: 'resp_1', input: [user('one')], output: [{ type: 'message', role: 'assistant' }] };
    const body = continuedBody({ model: 'm', previous_response_id: 'resp_1', input: 'two' }, last);
    expect(body).toEqual({ model: 'm', input: [user('one'), last.output[0], user('two')] });
    // Another id is the upstream's to know: sent as it came.
    const other = { model: 'm', previous_response_id: 'resp_other', input: 'two' };
    expect(continuedBody(other, last)).toBe(other);
  });

  it('answers a warm-up with created and completed, no output, zero usage, and keeps its input', () => {
    const { frames, turn } = warmUp({ model: 'm', input: 'hi', generate: false });
    const events = frames.map((frame) => JSON.parse(frame) as { type: string; response: Record<string, unknown> });
    expect(events.map((event) => event.type)).toEqual(['response.created', 'response.completed']);
    expect(events[1]!.response).toMatchObject({ id: turn.id, status: 'completed', output: [] });
    expect(events[1]!.response.usage).toMatchObject({ input_tokens: 0, output_tokens: 0 });
    expect(turn.input).toEqual([user('hi')]);
  });

  it('closes a turn only on response.completed or response.incomplete', () => {
    const completed = JSON.stringify({ type: 'response.completed', response: { id: 'resp_2', output: [1] } });
    expect(finishedTurn(completed, 'x')).toEqual({ id: 'resp_2', input: [user('x')], output: [1] });
    expect(finishedTurn(JSON.stringify({ type: 'response.output_text.delta', delta: 'a' }), 'x')).toBeUndefined();
  });
});
