// The abuse worker thread: holds the model and the round's window, and grows and scores off the request loop.
import { parentPort } from 'node:worker_threads';
import type { AbuseModel } from './abuse-model.js';
import {
  growModel,
  partsText,
  scoredColumns,
  scoreWindow,
  stuffingWindow,
  windowIsNovel,
  type GrowRequest,
  type WindowRows,
} from './abuse-scoring.js';
import type { ModelMeta, WorkerCall, WorkerReply } from './abuse-worker-client.js';

let model: AbuseModel | undefined;
let window: WindowRows = { rows: new Float64Array(0), requests: new Float64Array(0), count: 0 };
/** The training history last sent or grown here (the watch sends it again only when it changed). */
let history: string | undefined;

const metaOf = ({ version, trainedAt, subjects, partial }: AbuseModel): ModelMeta => ({
  version,
  trainedAt,
  subjects,
  partial,
});

function answer(call: WorkerCall): unknown {
  switch (call.op) {
    case 'load':
      window = call.window;
      return model ? windowIsNovel(model, window) : false;
    case 'use': {
      const parsed = JSON.parse(partsText(call.json)) as Partial<AbuseModel>;
      // A model of an earlier release (one forest, no groups) is not read: this process grows its own.
      if (!Array.isArray(parsed.views)) return null;
      model = parsed as AbuseModel;
      return metaOf(model);
    }
    case 'grow': {
      const sent = call.request.history;
      const request: GrowRequest = { ...call.request, history: call.historyHeld ? history : sent && partsText(sent) };
      const grown = growModel(request, window);
      history = grown.history ?? request.history;
      if (grown.model) model = grown.model;
      return {
        history: grown.history,
        ...(grown.model ? { json: JSON.stringify(grown.model), meta: metaOf(grown.model) } : {}),
      };
    }
    case 'score':
      return {
        scored: scoredColumns(model ? scoreWindow(model, window) : []),
        stuffing: scoredColumns(stuffingWindow(model, window)),
      };
  }
}

parentPort!.on('message', (call: WorkerCall) => {
  let reply: WorkerReply;
  try {
    reply = { id: call.id, ok: true, value: answer(call) };
  } catch (error) {
    reply = { id: call.id, ok: false, error: error instanceof Error ? error.message : String(error) };
  }
  parentPort!.postMessage(reply);
});
