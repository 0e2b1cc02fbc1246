// The abuse watch's side of its worker thread: one call at a time in order, answered by promise; restarted if it dies.
import type { Worker } from 'node:worker_threads';
import { startModuleWorker } from '@tollgate/core';
import type { TimeSlice } from '@tollgate/core/store-contracts';
import { buffersOf, textParts } from './abuse-scoring.js';
import type { GrowRequest, ScoredColumns, WindowRows } from './abuse-scoring.js';

/** What the watch keeps of a model: the model itself stays in the worker. */
export interface ModelMeta {
  version: number;
  trainedAt: number;
  subjects: number;
  partial: boolean;
}

type WorkerRequest =
  | { op: 'load'; window: WindowRows }
  /** Texts cross as UTF-8 parts (`textParts`), moved. */
  | { op: 'use'; json: Uint8Array[] }
  /** `historyHeld`: the request's history is the one the worker holds (not sent again). */
  | { op: 'grow'; request: GrowCall; historyHeld?: boolean }
  | { op: 'score' };
export type WorkerCall = { id: number } & WorkerRequest;
/** A grow request as it crosses: its history as UTF-8 parts. */
export type GrowCall = Omit<GrowRequest, 'history'> & { history: Uint8Array[] | undefined };
export type WorkerReply = { id: number } & ({ ok: true; value: unknown } | { ok: false; error: string });

interface Grown {
  history?: string;
  json?: string;
  meta?: ModelMeta;
}

interface Scored {
  scored: ScoredColumns;
  /** The addresses of a coordinated credential-stuffing attack (`stuffingWindow`). */
  stuffing: ScoredColumns;
}

type Pending = { resolve: (value: unknown) => void; reject: (error: Error) => void };

export class AbuseWorker {
  #worker: Worker | undefined;
  #next = 0;
  readonly #pending = new Map<number, Pending>();
  /** Bumped by each start: a new worker holds no model. */
  generation = 0;
  /**
   * The training history the worker holds (the one it was sent or grew last), of `generation`: a history of 8,192 rows
   * is megabytes of JSON, copied on the loop each time it crosses, so it crosses only when it changed.
   */
  #held: { generation: number; history: string | undefined } | undefined;

  #start(): Worker {
    const worker = startModuleWorker(import.meta.url, 'abuse-worker');
    // Like the watch's timer, the worker never keeps a process alive.
    worker.unref();
    worker.on('message', (reply: WorkerReply) => {
      const pending = this.#pending.get(reply.id);
      this.#pending.delete(reply.id);
      if (reply.ok) pending?.resolve(reply.value);
      else pending?.reject(new Error(`abuse worker: ${reply.error}`));
    });
    const fail = (error: Error) => {
      if (this.#worker === worker) this.#worker = undefined;
      for (const pending of this.#pending.values()) pending.reject(error);
      this.#pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`abuse worker exited (${code})`)));
    this.generation++;
    return worker;
  }

  #call<T>(call: WorkerRequest, transfer: ArrayBuffer[] = []): Promise<T> {
    const worker = (this.#worker ??= this.#start());
    const id = ++this.#next;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      worker.postMessage({ ...call, id }, transfer);
    });
  }

  /**
   * Hands the round's window over (buffers shared with the worker are shared, others move); resolves whether a row is
   * novel to the worker's model.
   */
  load(window: WindowRows): Promise<boolean> {
    const moved = [window.rows.buffer, window.requests.buffer].filter(
      (buffer): buffer is ArrayBuffer => !(buffer instanceof SharedArrayBuffer),
    );
    return this.#call({ op: 'load', window }, moved);
  }

  /** Takes a stored model (JSON, encoded in `slice`s); null when it is of an earlier release. */
  async use(json: string, slice: TimeSlice): Promise<ModelMeta | null> {
    const parts = await textParts(json, slice);
    return this.#call({ op: 'use', json: parts }, buffersOf(parts));
  }

  /** Grows a model on the stored training windows and the loaded window (`growModel`); encodes in `slice`s. */
  async grow(request: GrowRequest, slice: TimeSlice): Promise<Grown> {
    const held = this.#worker !== undefined && this.#held?.generation === this.generation;
    const historyHeld = held && request.history !== undefined && this.#held!.history === request.history;
    const history = historyHeld || request.history === undefined ? undefined : await textParts(request.history, slice);
    const grown = await this.#call<Grown>(
      { op: 'grow', request: { ...request, history }, ...(historyHeld && { historyHeld }) },
      [...buffersOf(request.subjects), ...buffersOf(history ?? [])],
    );
    this.#held = { generation: this.generation, history: grown.history ?? request.history };
    return grown;
  }

  /** Scores the loaded window with the worker's model. */
  score(): Promise<Scored> {
    return this.#call({ op: 'score' });
  }

  async close(): Promise<void> {
    const worker = this.#worker;
    this.#worker = undefined;
    await worker?.terminate();
  }
}
