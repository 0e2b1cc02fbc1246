// An OpenAI chat.completion.chunk stream rewritten as Anthropic Messages events (message_start ... message_stop).
import type { TokenUsage } from '@tollgate/core';
import { anthropicStopReason } from './answers.js';
import { asArray, isObject, parseJson, unixSeconds } from './json.js';
import type { Json } from './json.js';
import { sseEvent } from './sse.js';
import { SseTranslator } from './stream.js';
import { fromChatUsage, toAnthropicUsage } from './usage.js';

const event = (data: Json): string => sseEvent(data, String(data.type));

export class ChatToMessagesStream extends SseTranslator {
  private started = false;
  finished = false;
  /** The Anthropic content block being written, if any: blocks are sequential, one open at a time. */
  private open: number | undefined;
  private nextBlock = 0;
  /** OpenAI tool call index → the Anthropic content block of that call, and the call's id. */
  private readonly toolBlocks = new Map<number, { block: number; id: unknown }>();
  /** Set by the chunk with a finish_reason: the answer ended (whether or not [DONE] follows). */
  private stopReason: string | undefined;
  private refused = false;
  private reportedUsage: unknown;

  constructor(private readonly clientModel: string) {
    super();
  }

  override end(): string {
    let out = super.end();
    // Some OpenAI-compatible servers end without [DONE]; an answer that finished still gets its ending. A cut one stays cut.
    if (this.started && !this.finished && this.stopReason !== undefined) out += this.finish();
    return out;
  }

  /** OpenAI names no events: only the data counts. */
  protected onEvent(_event: string, data: string): string {
    return this.onData(data);
  }

  usage(): TokenUsage | undefined {
    return this.reportedUsage === undefined ? undefined : fromChatUsage(this.reportedUsage);
  }

  private onData(data: string): string {
    if (this.finished) return '';
    if (data.trim() === '[DONE]') return this.started ? this.finish() : '';
    const chunk = parseJson(data);
    if (!isObject(chunk)) return '';
    if (isObject(chunk.error)) {
      this.finished = true;
      return event({
        type: 'error',
        error: { type: 'api_error', message: String(chunk.error.message ?? 'The upstream failed mid-answer.') },
      });
    }
    let out = this.start(chunk);
    // Translated requests ask for one choice; the first is the answer.
    const choice = asArray(chunk.choices).find((entry) => isObject(entry) && (entry.index ?? 0) === 0);
    if (isObject(choice)) {
      const delta = isObject(choice.delta) ? choice.delta : {};
      for (const text of [delta.content, delta.refusal])
        if (typeof text === 'string' && text !== '') out += this.text(text);
      if (typeof delta.refusal === 'string' && delta.refusal !== '') this.refused = true;
      for (const call of asArray(delta.tool_calls)) if (isObject(call)) out += this.toolCall(call);
      if (typeof choice.finish_reason === 'string') {
        this.stopReason = this.refused ? 'refusal' : anthropicStopReason(choice.finish_reason);
        out += this.closeBlock();
      }
    }
    if (isObject(chunk.usage)) this.reportedUsage = chunk.usage;
    return out;
  }

  private start(chunk: Json): string {
    if (this.started) return '';
    this.started = true;
    const message = {
      id: typeof chunk.id === 'string' ? chunk.id : `msg_${unixSeconds()}`,
      type: 'message',
      role: 'assistant',
      model: this.clientModel,
      content: [],
      stop_reason: null,
      stop_sequence: null,
      // OpenAI reports usage only at the end: message_delta carries all of it.
      usage: { input_tokens: 0, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 0 },
    };
    return event({ type: 'message_start', message });
  }

  private text(text: string): string {
    let out = '';
    if (this.open === undefined || this.toolBlockOpen()) {
      out += this.closeBlock();
      out += this.openBlock({ type: 'text', text: '' });
    }
    return out + event({ type: 'content_block_delta', index: this.open, delta: { type: 'text_delta', text } });
  }

  private toolBlockOpen(): boolean {
    for (const call of this.toolBlocks.values()) if (call.block === this.open) return true;
    return false;
  }

  private toolCall(call: Json): string {
    const toolIndex = typeof call.index === 'number' ? call.index : 0;
    const fn = isObject(call.function) ? call.function : {};
    let out = '';
    let known = this.toolBlocks.get(toolIndex);
    // Some OpenAI-compatible servers leave out `index` (every call is 0) but give each call its own id.
    const anotherCall = known !== undefined && typeof call.id === 'string' && call.id !== known.id;
    if (known === undefined || anotherCall) {
      out += this.closeBlock();
      out += this.openBlock({ type: 'tool_use', id: call.id, name: fn.name, input: {} });
      known = { block: this.open!, id: call.id };
      this.toolBlocks.set(toolIndex, known);
    }
    if (typeof fn.arguments === 'string' && fn.arguments !== '') {
      out += event({
        type: 'content_block_delta',
        index: known.block,
        delta: { type: 'input_json_delta', partial_json: fn.arguments },
      });
    }
    return out;
  }

  private openBlock(contentBlock: Json): string {
    this.open = this.nextBlock++;
    return event({ type: 'content_block_start', index: this.open, content_block: contentBlock });
  }

  private closeBlock(): string {
    if (this.open === undefined) return '';
    const index = this.open;
    this.open = undefined;
    return event({ type: 'content_block_stop', index });
  }

  private finish(): string {
    this.finished = true;
    const usage = toAnthropicUsage(fromChatUsage(this.reportedUsage));
    return (
      this.closeBlock() +
      event({
        type: 'message_delta',
        delta: { stop_reason: this.stopReason ?? (this.refused ? 'refusal' : 'end_turn'), stop_sequence: null },
        usage,
      }) +
      event({ type: 'message_stop' })
    );
  }
}
