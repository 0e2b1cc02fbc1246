// What a Responses WebSocket keeps between its responses when bridged to HTTP: the last turn, so a `response.create`
// that continues it by `previous_response_id` (with `store: false`, known only to the socket) is sent as the whole
// conversation, and a warm-up (`generate: false`) is answered here, nothing sent upstream (docs/responses-websocket.md).
import { randomUUID } from 'node:crypto';

/** The last turn of a socket: its response's id, the input it was asked with, and its output items. */
export interface LastTurn {
  id: string;
  input: unknown[];
  output: unknown[];
}

/** A request's `input` as a list of items (a string is one user message). */
function inputItems(input: unknown): unknown[] {
  if (Array.isArray(input)) return input;
  if (typeof input === 'string') return [{ type: 'message', role: 'user', content: input }];
  return [];
}

/**
 * The body to send for a `response.create`: one that continues `last` by its id gets the whole conversation as its
 * input (no `previous_response_id`, which the HTTP upstream may not know); any other is sent as it came.
 */
export function continuedBody(body: Record<string, unknown>, last: LastTurn | undefined): Record<string, unknown> {
  if (!last || body.previous_response_id !== last.id) return body;
  const { previous_response_id: _continued, ...rest } = body;
  return { ...rest, input: [...last.input, ...last.output, ...inputItems(body.input)] };
}

/** The turn a finished response's event closes (`response.completed` or `.incomplete`), else undefined. */
export function finishedTurn(data: string, input: unknown): LastTurn | undefined {
  if (!/^\{"type"\s*:\s*"response\.(completed|incomplete)"/.test(data)) return undefined;
  try {
    const { response } = JSON.parse(data) as { response?: { id?: unknown; output?: unknown } };
    if (typeof response?.id !== 'string') return undefined;
    return { id: response.id, input: inputItems(input), output: Array.isArray(response.output) ? response.output : [] };
  } catch {
    return undefined;
  }
}

/**
 * A warm-up (`generate: false`): its events (created, then completed with no output and no usage), and the turn it
 * leaves for the next `response.create` to continue. Nothing is generated, so nothing is sent upstream or billed.
 */
export function warmUp(body: Record<string, unknown>): { frames: string[]; turn: LastTurn } {
  const id = `resp_${randomUUID().replaceAll('-', '')}`;
  const response = (status: string, usage: unknown) => ({
    ...{ id, object: 'response', created_at: Math.floor(Date.now() / 1000), status, model: body.model },
    ...{ output: [], usage },
  });
  const usage = {
    ...{ input_tokens: 0, input_tokens_details: { cached_tokens: 0 } },
    ...{ output_tokens: 0, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 0 },
  };
  return {
    frames: [
      JSON.stringify({ type: 'response.created', sequence_number: 0, response: response('in_progress', null) }),
      JSON.stringify({ type: 'response.completed', sequence_number: 1, response: response('completed', usage) }),
    ],
    turn: { id, input: inputItems(body.input), output: [] },
  };
}
