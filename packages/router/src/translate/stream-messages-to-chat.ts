// An Anthropic Messages event stream rewritten, event by event, as OpenAI chat.completion.chunk events.
import type { TokenUsage } from '@tollgate/core';
import { chatFinishReason } from './answers.js';
import { isObject, parseJson, unixSeconds } from './json.js';
import type { Json } from './json.js';
import { sseEvent } from './sse.js';
import { SseTranslator } from './stream.js';
import { assignUsage, fromAnthropicUsage, toChatUsage } from './usage.js';

export class MessagesToChatStream extends SseTranslator {
  private id = '';
  private readonly created = unixSeconds();
  private readonly reported: Json = {};
  /** Anthropic content block index → OpenAI tool call index (tool calls are numbered apart from text). */
  private readonly toolCalls = new Map<number, number>();
  finished = false;

  constructor(
    private readonly clientModel: string,
    private readonly includeUsage: boolean,
  ) {
    super();
  }

  usage(): TokenUsage | undefined {
    return Object.keys(this.reported).length === 0 ? undefined : fromAnthropicUsage(this.reported);
  }

  private chunk(delta: Json, finishReason: string | null = null): string {
    return sseEvent({
      id: this.id,
      object: 'chat.completion.chunk',
      created: this.created,
      model: this.clientModel,
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
    });
  }

  protected onEvent(event: string, data: string): string {
    const payload = parseJson(data);
    if (!isObject(payload) || this.finished) return '';
    const type = typeof payload.type === 'string' ? payload.type : event;
    switch (type) {
      case 'message_start': {
        const message = isObject(payload.message) ? payload.message : {};
        this.id = typeof message.id === 'string' ? message.id : `chatcmpl-${this.created}`;
        assignUsage(this.reported, message.usage);
        return this.chunk({ role: 'assistant', content: '', refusal: null });
      }
      case 'content_block_start': {
        const block = isObject(payload.content_block) ? payload.content_block : {};
        if (block.type === 'tool_use' && typeof payload.index === 'number') {
          const index = this.toolCalls.size;
          this.toolCalls.set(payload.index, index);
          const call = { index, id: block.id, type: 'function', function: { name: block.name, arguments: '' } };
          return this.chunk({ tool_calls: [call] });
        }
        if (block.type === 'text' && typeof block.text === 'string' && block.text !== '')
          return this.chunk({ content: block.text });
        return '';
      }
      case 'content_block_delta': {
        const delta = isObject(payload.delta) ? payload.delta : {};
        if (delta.type === 'text_delta' && typeof delta.text === 'string') return this.chunk({ content: delta.text });
        const index = typeof payload.index === 'number' ? this.toolCalls.get(payload.index) : undefined;
        if (
          delta.type === 'input_json_delta' &&
          index !== undefined &&
          typeof delta.partial_json === 'string' &&
          delta.partial_json !== ''
        ) {
          return this.chunk({ tool_calls: [{ index, function: { arguments: delta.partial_json } }] });
        }
        // Thinking and signature deltas: a chat completion has no place for Anthropic's reasoning.
        return '';
      }
      case 'message_delta': {
        assignUsage(this.reported, payload.usage);
        const delta = isObject(payload.delta) ? payload.delta : {};
        return this.chunk({}, chatFinishReason(delta.stop_reason));
      }
      case 'message_stop': {
        this.finished = true;
        const usage = this.includeUsage
          ? sseEvent({
              id: this.id,
              object: 'chat.completion.chunk',
              created: this.created,
              model: this.clientModel,
              choices: [],
              usage: toChatUsage(fromAnthropicUsage(this.reported)),
            })
          : '';
        return `${usage}data: [DONE]\n\n`;
      }
      case 'error': {
        // The OpenAI SDKs read a data line with an `error` object as a failed stream.
        const error = isObject(payload.error) ? payload.error : {};
        this.finished = true;
        return sseEvent({
          error: {
            message: String(error.message ?? 'The upstream failed mid-answer.'),
            type: String(error.type ?? 'api_error'),
            code: null,
            param: null,
          },
        });
      }
      default:
        // ping, content_block_stop and events added later carry nothing a chat chunk has.
        return '';
    }
  }
}
