// A fake OpenAI upstream for the Batch API tests: files (input and output) and batches, ended on demand with an output
// file whose lines carry usage, as OpenAI's API answers them.
import type { ServerResponse } from 'node:http';
import OpenAI, { toFile } from 'openai';
import type { FakeUpstreamRequest } from './proxy.js';

/** gpt-4o-mini at batch prices (half of $0.15 and $0.60 per 1M), micro-USD per 1M tokens = pico-USD per token. */
export const INPUT_PICO = 75_000;
export const OUTPUT_PICO = 300_000;

interface UpstreamBatch {
  id: string;
  object: 'batch';
  endpoint: string;
  input_file_id: string;
  completion_window: string;
  status: string;
  output_file_id: string | null;
  created_at: number;
}

/** The fake upstream's files (input and output) and batches. */
export const files = new Map<string, { purpose: string; content: string }>();
export const batches = new Map<string, UpstreamBatch>();
let lastId = 0;

function sendJson(res: ServerResponse, body: unknown, status = 200): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

function fileObject(id: string) {
  const file = files.get(id)!;
  const bytes = Buffer.byteLength(file.content);
  return { id, object: 'file', bytes, created_at: 1, filename: 'input.jsonl', purpose: file.purpose };
}

/** The `file` part of a multipart upload as the upstream received it. */
function uploadedFile(request: FakeUpstreamRequest): string {
  const text = request.raw.toString('utf8');
  const match = /name="file"; filename="[^"]*"\r\nContent-Type: [^\r]*\r\n\r\n([\s\S]*?)\r\n--/.exec(text);
  return match![1]!;
}

/** Answers as OpenAI's files and batches API does. */
export function answerAsOpenAi(request: FakeUpstreamRequest, res: ServerResponse): void {
  const { method, url } = request;
  if (method === 'POST' && url === '/v1/files') {
    const id = `file-${++lastId}`;
    files.set(id, { purpose: 'batch', content: uploadedFile(request) });
    sendJson(res, fileObject(id));
    return;
  }
  const file = /^\/v1\/files\/([^/]+)(\/content)?$/.exec(url);
  if (method === 'GET' && file && files.has(file[1]!)) {
    if (file[2]) res.writeHead(200, { 'content-type': 'application/jsonl' }).end(files.get(file[1]!)!.content);
    else sendJson(res, fileObject(file[1]!));
    return;
  }
  if (method === 'POST' && url === '/v1/batches') {
    const body = request.body as Record<string, string>;
    if (body.endpoint === '/v1/embeddings') {
      // A refusal that echoes the key it was sent, as a careless upstream may.
      const message = `Key ${String(request.headers.authorization)} may not run embeddings batches.`;
      sendJson(res, { error: { message, type: 'invalid_request_error' } }, 400);
      return;
    }
    const batch: UpstreamBatch = {
      id: `batch_${++lastId}`,
      object: 'batch',
      endpoint: body.endpoint!,
      input_file_id: body.input_file_id!,
      completion_window: body.completion_window!,
      status: 'validating',
      output_file_id: null,
      created_at: 1,
    };
    batches.set(batch.id, batch);
    sendJson(res, batch);
    return;
  }
  const batch = /^\/v1\/batches\/([^/]+)(\/cancel)?$/.exec(url);
  if (batch && batches.has(batch[1]!)) {
    const found = batches.get(batch[1]!)!;
    if (method === 'POST' && batch[2]) found.status = 'cancelled';
    sendJson(res, found);
    return;
  }
  sendJson(res, { error: { message: `no ${method} ${url}`, type: 'invalid_request_error' } }, 404);
}

/** Ends a batch as the upstream does: an output file with each answered line's usage, the given status. */
export function finish(batchId: string, status: string, usages: { prompt: number; completion: number }[]): void {
  const batch = batches.get(batchId)!;
  const lines = usages.map((usage, index) =>
    JSON.stringify({
      id: `batch_req_${index}`,
      custom_id: `request-${index + 1}`,
      response: {
        status_code: 200,
        request_id: `req_${index}`,
        body: {
          id: `chatcmpl-${index}`,
          object: 'chat.completion',
          model: 'gpt-4o-mini-2024-07-18',
          choices: [{ index: 0, message: { role: 'assistant', content: 'Done.' }, finish_reason: 'stop' }],
          usage: {
            prompt_tokens: usage.prompt,
            completion_tokens: usage.completion,
            total_tokens: usage.prompt + usage.completion,
          },
        },
      },
      error: null,
    }),
  );
  const outputId = `file-${++lastId}`;
  files.set(outputId, { purpose: 'batch_output', content: `${lines.join('\n')}\n` });
  batch.status = status;
  batch.output_file_id = outputId;
}

/** A batch input line: a chat completion capped at `maxTokens`. */
export function chatLine(index: number, model: string, maxTokens: number) {
  const body = { model, messages: [{ role: 'user', content: `Say hello number ${index}.` }], max_tokens: maxTokens };
  return { custom_id: `request-${index}`, method: 'POST', url: '/v1/chat/completions', body };
}

/** The most a line may cost: each byte of its body an input token, its whole cap output, at batch prices. */
export function worstCaseOf(lines: ReturnType<typeof chatLine>[]): number {
  return lines.reduce((sum, line) => {
    const bytes = Buffer.byteLength(JSON.stringify(line.body));
    return sum + Math.ceil((bytes * INPUT_PICO + line.body.max_tokens * OUTPUT_PICO) / 1000);
  }, 0);
}

export const jsonl = (lines: unknown[]) => `${lines.map((line) => JSON.stringify(line)).join('\n')}\n`;

/** Uploads `lines` as a batch input file through `client`. */
export async function uploadBatchFile(client: OpenAI, lines: unknown[]): Promise<OpenAI.Files.FileObject> {
  return client.files.create({ file: await toFile(Buffer.from(jsonl(lines)), 'input.jsonl'), purpose: 'batch' });
}

/** Creates a chat completions job of `fileId` through `client`. */
export function createChatBatch(client: OpenAI, fileId: string): Promise<OpenAI.Batches.Batch> {
  return client.batches.create({ input_file_id: fileId, endpoint: '/v1/chat/completions', completion_window: '24h' });
}

/** What key `id`'s budget holds now, spent and reserved, as the gateway at `url` reads it. */
export async function keyCharged(url: string, adminKey: string, id: string): Promise<number> {
  const response = await fetch(`${url}/admin/budgets/key/${id}`, { headers: { authorization: `Bearer ${adminKey}` } });
  const { budgets } = (await response.json()) as { budgets: { spentNanoUsd: number; reservedNanoUsd: number }[] };
  return budgets[0]!.spentNanoUsd + budgets[0]!.reservedNanoUsd;
}
