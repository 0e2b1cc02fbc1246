// Store script calls made in one event-loop turn, sent together as one EVALSHA of the script bundle (one per Cluster slot).
import calculateSlot from 'cluster-key-slot';
import { StoreTimeoutError } from '@tollgate/core';
import { DeadlineTimer, spareAfterStall, type Deadlined } from '@tollgate/core/store-contracts';
import type { LuaScript, SendCommand } from './lua.js';
import type { BundleOperation, ScriptBundle, ScriptCommand } from './script-bundle.js';

/** How a batch reaches Redis. */
export interface BatchTransport {
  send: SendCommand;
  /** While the first connect is under way: settles once it is over (either way). Otherwise undefined. */
  connecting(): Promise<void> | undefined;
}

interface ScriptBatcherOptions {
  /**
   * `'slot'`: one bundle per Cluster hash slot (of each call's first key), for a sendCommand that
   * routes by key. `'none'`: one bundle for every call of the turn (one server).
   */
  group: 'slot' | 'none';
  /** At most this many calls per bundle; more go out as further bundles, pipelined. */
  maxCalls?: number;
  /** Deadline of every call in ms (StoreTimeoutError past it); 0 for none. @default 0 */
  timeoutMs?: number;
}

/** A queued operation, its resolve and reject those of its caller's promise (what settles it later is ignored). */
interface QueuedCall extends BundleOperation, Deadlined {
  readonly operation: string;
  /** performance.now() past which nobody waits for the reply: the call is then not sent at all. */
  deadline: number;
  /** Its bundle answered (or failed): its deadline no longer matters. */
  answered: boolean;
}

/** What stands in `#waiting` for a call dropped before the array is cut. */
const ANSWERED: QueuedCall = {
  position: 0,
  keys: [],
  args: [],
  operation: '',
  deadline: 0,
  spared: false,
  answered: true,
  resolve: () => undefined,
  reject: () => undefined,
};

/** Enough to spread a burst over a few bundles without one script holding Redis for long. */
const DEFAULT_MAX_CALLS = 128;

/**
 * Queues the store script calls of one turn of the event loop and sends them as one bundle, each
 * call in the order it was made, from a setImmediate: after every I/O callback of the turn and the
 * promise chains they started (express-rate-limit reaches its store a few awaits in). Under load
 * one bundle then carries the calls of every request the turn read; why that boundary rather than
 * the end of each callback's microtasks: docs/performance.md.
 *
 * Each call carries its own deadline (`timeoutMs`, the same for every call of a connection): the
 * calls waiting for a reply are kept in the order they were made, which is their deadlines' order,
 * so one timer, set for the oldest, serves them all, and a call needs no deadline wrapped around it. A check that
 * ran late because this process stalled spares the calls it finds due once (core's `spareAfterStall`).
 */
export class ScriptBatcher {
  readonly #bundle: ScriptBundle;
  readonly #transport: BatchTransport;
  readonly #bySlot: boolean;
  readonly #maxCalls: number;
  readonly #timeoutMs: number;
  #queued = new Map<number, QueuedCall[]>();
  #scheduled = false;
  /**
   * Calls with a deadline, oldest first, from `#head` on: those before it were answered or expired. Answered calls leave
   * the front as their bundles answer, not at their deadline: held until then, each call's keys, arguments, promise
   * and reply outlived its request by the whole timeout (500 ms by default), long enough to be promoted to the old
   * generation, thousands a second under load (docs/performance.md, "Short runs on Redis").
   */
  #waiting: QueuedCall[] = [];
  #head = 0;
  /** Set for the oldest call's deadline. */
  readonly #timer = new DeadlineTimer((now, stalledMs) => this.#expire(now, stalledMs));
  /** The functions of the promise being made (see `queue`), and the one executor that hands them over. */
  #resolve: (value: unknown) => void = () => undefined;
  #reject: (error: unknown) => void = () => undefined;
  readonly #capture = (resolve: (value: unknown) => void, reject: (error: unknown) => void) => {
    this.#resolve = resolve;
    this.#reject = reject;
  };
  readonly #flushNow = () => this.flush();

  constructor(bundle: ScriptBundle, transport: BatchTransport, options: ScriptBatcherOptions) {
    this.#bundle = bundle;
    this.#transport = transport;
    this.#bySlot = options.group === 'slot';
    this.#maxCalls = options.maxCalls ?? DEFAULT_MAX_CALLS;
    this.#timeoutMs = options.timeoutMs ?? 0;
  }

  /** True when `command` is an EVALSHA of a script the bundle holds (it can then go through `add`). */
  takes(command: readonly string[]): boolean {
    return command[0] === 'EVALSHA' && this.#bundle.positionOf(command[1]) !== undefined;
  }

  /** The position of `script` in the bundle, when the bundle holds it (its calls can then go through `queue`). */
  positionOf(script: LuaScript): number | undefined {
    return this.#bundle.positionOf(script.sha1);
  }

  /** Queues one script call, given as its EVALSHA command, for this turn's bundle (see `queue`). */
  add(command: ScriptCommand, operation: string): Promise<unknown> {
    const keyCount = Number(command[2]);
    return this.queue(
      this.#bundle.positionOf(command[1])!,
      command.slice(3, 3 + keyCount),
      command.slice(3 + keyCount),
      operation,
    );
  }

  /**
   * Queues one call of the script at `position` for this turn's bundle; resolves with the script's
   * reply, or rejects with its error, or with a StoreTimeoutError once the deadline passed.
   */
  queue(
    position: number,
    keys: readonly string[],
    args: readonly (string | number)[],
    operation: string,
  ): Promise<unknown> {
    // One shared executor, not a closure per call: every request queues several calls.
    const promise = new Promise(this.#capture);
    const timeoutMs = this.#timeoutMs;
    const deadline = timeoutMs > 0 ? performance.now() + timeoutMs : Infinity;
    const call: QueuedCall = {
      position,
      keys,
      args,
      operation,
      deadline,
      spared: false,
      answered: false,
      resolve: this.#resolve,
      reject: this.#reject,
    };
    if (deadline !== Infinity) {
      this.#waiting.push(call);
      if (!this.#timer.armed) this.#timer.arm(deadline);
    }
    // A call without keys goes anywhere: on Cluster, any node runs it.
    const group = this.#bySlot && keys.length > 0 ? calculateSlot(keys[0]!) : -1;
    const calls = this.#queued.get(group);
    if (calls) calls.push(call);
    else this.#queued.set(group, [call]);
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(this.#flushNow);
    }
    return promise;
  }

  /** Fails the calls whose deadline passed (or spares them, after a stall), and sets the timer for the next one. */
  #expire(now: number, stalledMs: number): void {
    const waiting = this.#waiting;
    let next = Infinity;
    // The answered and failed calls at the front are dropped; a spared call keeps its place.
    let answeredUpTo = this.#head;
    for (let at = this.#head; at < waiting.length; at++) {
      const call = waiting[at]!;
      if (!call.answered) {
        if (call.deadline > now) {
          next = Math.min(next, call.deadline);
          // Past the spared calls at the front, the rest come in deadline order.
          if (!call.spared) break;
        } else if (spareAfterStall(call, now, stalledMs, this.#timeoutMs)) {
          next = Math.min(next, call.deadline);
        } else {
          call.answered = true;
          call.reject(new StoreTimeoutError(call.operation, this.#timeoutMs));
        }
      }
      if (call.answered && answeredUpTo === at) answeredUpTo = at + 1;
    }
    this.#dropUpTo(answeredUpTo);
    if (next !== Infinity) this.#timer.arm(next, now);
  }

  /** Drops the answered calls at the front of `#waiting` (a bundle's calls are answered together, mostly in order). */
  #dropAnswered(): void {
    const waiting = this.#waiting;
    let first = this.#head;
    while (first < waiting.length && waiting[first]!.answered) first++;
    this.#dropUpTo(first);
  }

  /** Forgets `#waiting` before `first`: the array is cut once the dropped part is most of it, so each call is copied at most once. */
  #dropUpTo(first: number): void {
    const waiting = this.#waiting;
    if (first >= waiting.length) {
      // Empty already (calls without deadlines never enter it): nothing to make for every bundle answered.
      if (waiting.length > 0) this.#waiting = [];
      this.#head = 0;
    } else if (first * 2 >= waiting.length) {
      this.#waiting = waiting.slice(first);
      this.#head = 0;
    } else {
      // The dropped ones are released now, though the array keeps its length until it is cut.
      for (let i = this.#head; i < first; i++) waiting[i] = ANSWERED;
      this.#head = first;
    }
  }

  /** Sends what is queued now (the turn's end does it by itself; a closing connection cannot wait for it). */
  flush(): void {
    const queued = this.#queued;
    this.#queued = new Map();
    this.#scheduled = false;
    for (const calls of queued.values()) {
      if (calls.length <= this.#maxCalls) void this.#send(calls);
      else
        for (let start = 0; start < calls.length; start += this.#maxCalls)
          void this.#send(calls.slice(start, start + this.#maxCalls));
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
        call.answered = true;
        call.reject(new StoreTimeoutError(call.operation, this.#timeoutMs));
        return false;
      });
      if (calls.length === 0) {
        this.#dropAnswered();
        return;
      }
    }
    try {
      await this.#bundle.runOperations(this.#transport.send, calls);
    } catch (error) {
      for (const call of calls) call.reject(error);
    }
    for (const call of calls) call.answered = true;
    this.#dropAnswered();
  }
}
