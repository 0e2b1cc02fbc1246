// Store script calls made in one event-loop turn, sent together as one EVALSHA of the script bundle (one per Cluster slot).
import calculateSlot from 'cluster-key-slot';
import { StoreTimeoutError } from '@tollgate/core';
import type { SendCommand } from './lua.js';
import type { ScriptBundle, ScriptCommand } from './script-bundle.js';

/** How a batch reaches Redis. */
export interface BatchTransport {
  send: SendCommand;
  /** While the first connect is under way: settles once it is over (either way). Otherwise undefined. */
  connecting(): Promise<void> | undefined;
}

export interface ScriptBatcherOptions {
  /**
   * `'slot'`: one bundle per Cluster hash slot (of each call's first key), for a sendCommand that
   * routes by key. `'none'`: one bundle for every call of the turn (one server).
   */
  group: 'slot' | 'none';
  /** At most this many calls per bundle; more go out as further bundles, pipelined. */
  maxCalls?: number;
}

interface QueuedCall {
  readonly command: ScriptCommand;
  readonly operation: string;
  readonly timeoutMs: number;
  /** performance.now() past which nobody waits for the reply: the call is then not sent at all. */
  readonly deadline: number;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

/** Enough to spread a burst over a few bundles without one script holding Redis for long. */
const DEFAULT_MAX_CALLS = 128;

/**
 * Queues the store script calls of one turn of the event loop and sends them as one bundle, each
 * call in the order it was made, from a setImmediate: after every I/O callback of the turn and the
 * promise chains they started (express-rate-limit reaches its store a few awaits in). Under load
 * one bundle then carries the calls of every request the turn read; why that boundary rather than
 * the end of each callback's microtasks: docs/performance.md.
 */
export class ScriptBatcher {
  readonly #bundle: ScriptBundle;
  readonly #transport: BatchTransport;
  readonly #bySlot: boolean;
  readonly #maxCalls: number;
  #queued = new Map<number, QueuedCall[]>();
  #scheduled = false;

  constructor(bundle: ScriptBundle, transport: BatchTransport, options: ScriptBatcherOptions) {
    this.#bundle = bundle;
    this.#transport = transport;
    this.#bySlot = options.group === 'slot';
    this.#maxCalls = options.maxCalls ?? DEFAULT_MAX_CALLS;
  }

  /** True when `command` is an EVALSHA of a script the bundle holds (it can then go through `add`). */
  takes(command: readonly string[]): boolean {
    return command[0] === 'EVALSHA' && this.#bundle.positionOf(command[1]) !== undefined;
  }

  /** Queues one script call for this turn's bundle; resolves with the script's reply or rejects with its error. */
  add(command: ScriptCommand, operation: string, timeoutMs: number): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const deadline = timeoutMs > 0 ? performance.now() + timeoutMs : Infinity;
      // A call without keys goes anywhere: on Cluster, any node runs it.
      const group = this.#bySlot && Number(command[2]) > 0 ? calculateSlot(command[3]!) : -1;
      const calls = this.#queued.get(group);
      const call: QueuedCall = { command, operation, timeoutMs, deadline, resolve, reject };
      if (calls) calls.push(call);
      else this.#queued.set(group, [call]);
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Sends what is queued now (the turn's end does it by itself; a closing connection cannot wait for it). */
  flush(): void {
    const queued = this.#queued;
    this.#queued = new Map();
    this.#scheduled = false;
    for (const calls of queued.values()) {
      for (let start = 0; start < calls.length; start += this.#maxCalls) void this.#send(calls.slice(start, start + this.#maxCalls));
    }
  }

  /** Never rejects: every call's own promise carries the outcome. */
  async #send(calls: QueuedCall[]): Promise<void> {
    const connecting = this.#transport.connecting();
    if (connecting) {
      await connecting;
      // Calls whose caller gave up while the connection came up are not run late (a late reserve
      // would hold budget nobody settles).
      const now = performance.now();
      calls = calls.filter((call) => {
        if (call.deadline > now) return true;
        call.reject(new StoreTimeoutError(call.operation, call.timeoutMs));
        return false;
      });
      if (calls.length === 0) return;
    }
    try {
      const replies = await this.#bundle.run(this.#transport.send, calls.map((call) => call.command));
      replies.forEach((reply, index) => {
        const call = calls[index]!;
        if (reply.ok) call.resolve(reply.value);
        else call.reject(reply.error);
      });
    } catch (error) {
      for (const call of calls) call.reject(error);
    }
  }
}
