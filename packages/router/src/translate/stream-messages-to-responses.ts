// An Anthropic Messages event stream rewritten as OpenAI Responses events (response.created ... response.completed).
import type { TokenUsage } from '@tollgate/core';
import { isObject, parseJson, unixSeconds } from './json.js';
import type { Json } from './json.js';
import { functionCallItem, messageItem, responseObject, textPart } from './responses-answer.js';
import type { ResponseState } from './responses-answer.js';
import { sseEvent } from './sse.js';
import { SseTranslator } from './stream.js';
import { assignUsage, fromAnthropicUsage } from './usage.js';

/** An output item being written, by Anthropic content block index. */
interface OpenItem {
  outputIndex: number;
  id: string;
  kind: 'text' | 'tool';
  text: string;
  callId?: unknown;
  name?: unknown;
}

export class MessagesToResponsesStream extends SseTranslator {
  private sequence = 0;
  private readonly state: ResponseState;
  private messageId = '';
  private readonly reported: Json = {};
  private readonly open = new Map<number, OpenItem>();
  finished = false;

  constructor(clientModel: string) {
    super();
    this.state = { id: '', createdAt: unixSeconds(), model: clientModel, output: [] };
  }

  usage(): TokenUsage | undefined {
    return Object.keys(this.reported).length === 0 ? undefined : fromAnthropicUsage(this.reported);
  }

  private emit(type: string, data: Json): string {
    return sseEvent({ type, sequence_number: this.sequence++, ...data }, type);
  }

  protected onEvent(event: string, data: string): string {
    const payload = parseJson(data);
    if (!isObject(payload) || this.finished) return '';
    const type = typeof payload.type === 'string' ? payload.type : event;
    const index = typeof payload.index === 'number' ? payload.index : -1;
    switch (type) {
      case 'message_start': {
        const message = isObject(payload.message) ? payload.message : {};
        this.messageId = typeof message.id === 'string' ? message.id : `msg_${this.state.createdAt}`;
        this.state.id = `resp_${this.messageId}`;
        assignUsage(this.reported, message.usage);
        const response = responseObject({ ...this.state, output: [] }, false);
        return this.emit('response.created', { response }) + this.emit('response.in_progress', { response });
      }
      case 'content_block_start':
        return this.startItem(index, isObject(payload.content_block) ? payload.content_block : {});
      case 'content_block_delta':
        return this.delta(index, isObject(payload.delta) ? payload.delta : {});
      case 'content_block_stop':
        return this.stopItem(index);
      case 'message_delta': {
        assignUsage(this.reported, payload.usage);
        if (isObject(payload.delta)) this.state.stopReason = payload.delta.stop_reason;
        return '';
      }
      case 'message_stop': {
        this.finished = true;
        let out = '';
        for (const blockIndex of [...this.open.keys()]) out += this.stopItem(blockIndex);
        this.state.usage = fromAnthropicUsage(this.reported);
        const response = responseObject(this.state, true);
        return (
          out + this.emit(response.status === 'incomplete' ? 'response.incomplete' : 'response.completed', { response })
        );
      }
      case 'error': {
        this.finished = true;
        const error = isObject(payload.error) ? payload.error : {};
        return this.emit('error', {
          code: String(error.type ?? 'api_error'),
          message: String(error.message ?? 'The upstream failed mid-answer.'),
          param: null,
        });
      }
      default:
        return '';
    }
  }

  private startItem(index: number, block: Json): string {
    const outputIndex = this.state.output.length + this.open.size;
    if (block.type === 'text') {
      const item: OpenItem = { outputIndex, id: `${this.messageId}_${index}`, kind: 'text', text: '' };
      this.open.set(index, item);
      let out = this.emit('response.output_item.added', {
        output_index: outputIndex,
        item: messageItem(item.id, 'in_progress', []),
      });
      out += this.emit('response.content_part.added', {
        item_id: item.id,
        output_index: outputIndex,
        content_index: 0,
        part: textPart('', false),
      });
      if (typeof block.text === 'string' && block.text !== '')
        out += this.delta(index, { type: 'text_delta', text: block.text });
      return out;
    }
    if (block.type === 'tool_use') {
      const item: OpenItem = {
        outputIndex,
        id: `fc_${String(block.id)}`,
        kind: 'tool',
        text: '',
        callId: block.id,
        name: block.name,
      };
      this.open.set(index, item);
      return this.emit('response.output_item.added', {
        output_index: outputIndex,
        item: functionCallItem(item.id, item.callId, item.name, '', 'in_progress'),
      });
    }
    // Thinking blocks: a Responses answer from another provider has no reasoning items to show.
    return '';
  }

  private delta(index: number, delta: Json): string {
    const item = this.open.get(index);
    if (!item) return '';
    if (item.kind === 'text' && delta.type === 'text_delta' && typeof delta.text === 'string') {
      item.text += delta.text;
      return this.emit('response.output_text.delta', {
        item_id: item.id,
        output_index: item.outputIndex,
        content_index: 0,
        delta: delta.text,
        logprobs: [],
      });
    }
    if (
      item.kind === 'tool' &&
      delta.type === 'input_json_delta' &&
      typeof delta.partial_json === 'string' &&
      delta.partial_json !== ''
    ) {
      item.text += delta.partial_json;
      return this.emit('response.function_call_arguments.delta', {
        item_id: item.id,
        output_index: item.outputIndex,
        delta: delta.partial_json,
      });
    }
    return '';
  }

  private stopItem(index: number): string {
    const item = this.open.get(index);
    if (!item) return '';
    this.open.delete(index);
    let out: string;
    let done: Json;
    if (item.kind === 'text') {
      const part = textPart(item.text, false);
      out = this.emit('response.output_text.done', {
        item_id: item.id,
        output_index: item.outputIndex,
        content_index: 0,
        text: item.text,
        logprobs: [],
      });
      out += this.emit('response.content_part.done', {
        item_id: item.id,
        output_index: item.outputIndex,
        content_index: 0,
        part,
      });
      done = messageItem(item.id, 'completed', [part]);
    } else {
      // A tool call with no argument deltas had an empty input.
      const args = item.text === '' ? '{}' : item.text;
      out = this.emit('response.function_call_arguments.done', {
        item_id: item.id,
        output_index: item.outputIndex,
        name: item.name,
        arguments: args,
      });
      done = functionCallItem(item.id, item.callId, item.name, args, 'completed');
    }
    this.state.output[item.outputIndex] = done;
    return out + this.emit('response.output_item.done', { output_index: item.outputIndex, item: done });
  }
}
