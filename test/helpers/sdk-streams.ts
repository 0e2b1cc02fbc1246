// One stream through the official SDK of each API (OpenAI chat and Responses, Anthropic Messages, Google GenAI), read
// to its end: how the answer said it ended, or that a budget refused it.
import Anthropic from '@anthropic-ai/sdk';
import { GoogleGenAI } from '@google/genai';
import OpenAI from 'openai';

export type StreamApi = 'chat' | 'responses' | 'messages' | 'gemini';

/** How each API says an answer stopped at its output cap. */
export const CAP_ENDINGS: Record<StreamApi, string> = {
  chat: 'length',
  responses: 'incomplete',
  messages: 'max_tokens',
  gemini: 'MAX_TOKENS',
};

/** How each API says an answer ended by itself. */
export const NATURAL_ENDINGS: Record<StreamApi, string> = {
  chat: 'stop',
  responses: 'completed',
  messages: 'end_turn',
  gemini: 'STOP',
};

/** A stream as its client saw it: its ending (finish reason, status, stop reason) and its text. */
export interface SdkStream {
  ending: string | undefined;
  text: string;
}

/** What became of a request: streamed to its end, refused because a budget is spent, or held by calls in flight. */
export type StreamOutcome = SdkStream | 'exhausted' | 'held';

export interface StreamCall {
  /** The gateway's base URL (no path). */
  url: string;
  key: string;
  api: StreamApi;
  model: string;
  maxTokens: number;
  prompt?: string;
}

async function chat({ url, key, model, maxTokens, prompt }: Required<StreamCall>): Promise<SdkStream> {
  const client = new OpenAI({ apiKey: key, baseURL: `${url}/v1`, maxRetries: 0 });
  const stream = await client.chat.completions.create({
    model,
    messages: [{ role: 'user', content: prompt }],
    max_tokens: maxTokens,
    stream: true,
  });
  let text = '';
  let ending: string | undefined;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta.content ?? '';
    ending = chunk.choices[0]?.finish_reason ?? ending;
  }
  return { ending, text };
}

async function responses({ url, key, model, maxTokens, prompt }: Required<StreamCall>): Promise<SdkStream> {
  const client = new OpenAI({ apiKey: key, baseURL: `${url}/v1`, maxRetries: 0 });
  const response = await client.responses
    .stream({ model, input: prompt, max_output_tokens: maxTokens })
    .finalResponse();
  return { ending: response.status, text: response.output_text };
}

async function messages({ url, key, model, maxTokens, prompt }: Required<StreamCall>): Promise<SdkStream> {
  const client = new Anthropic({ apiKey: key, baseURL: url, maxRetries: 0 });
  const message = await client.messages
    .stream({ model, max_tokens: maxTokens, messages: [{ role: 'user', content: prompt }] })
    .finalMessage();
  const text = message.content.map((block) => (block.type === 'text' ? block.text : '')).join('');
  return { ending: message.stop_reason ?? undefined, text };
}

async function gemini({ url, key, model, maxTokens, prompt }: Required<StreamCall>): Promise<SdkStream> {
  const client = new GoogleGenAI({ apiKey: key, httpOptions: { baseUrl: url, apiVersion: 'v1beta' } });
  const stream = await client.models.generateContentStream({
    model,
    contents: prompt,
    config: { maxOutputTokens: maxTokens },
  });
  let text = '';
  let ending: string | undefined;
  for await (const chunk of stream) {
    text += chunk.text ?? '';
    ending = chunk.candidates?.[0]?.finishReason ?? ending;
  }
  return { ending, text };
}

const STREAMS: Record<StreamApi, (call: Required<StreamCall>) => Promise<SdkStream>> = {
  chat,
  responses,
  messages,
  gemini,
};

/** One stream through its API's SDK; a budget's 429 is an outcome, any other failure is thrown. */
export async function streamThroughSdk(call: StreamCall): Promise<StreamOutcome> {
  try {
    return await STREAMS[call.api]({ prompt: 'Tell me a long story', ...call });
  } catch (error) {
    const { status } = error as { status?: number };
    const message = String((error as Error).message);
    if (status === 429 && message.includes('Budget exhausted')) return 'exhausted';
    if (status === 429 && message.includes('held by requests in flight')) return 'held';
    throw error;
  }
}

/** Streams until a budget refuses for good (a refusal for money held in flight is retried): the streams answered. */
export async function streamUntilRefused(calls: (n: number) => StreamCall, most = 100): Promise<SdkStream[]> {
  const answered: SdkStream[] = [];
  while (answered.length < most) {
    const outcome = await streamThroughSdk(calls(answered.length));
    if (outcome === 'exhausted') return answered;
    if (outcome === 'held') await new Promise((resolve) => setTimeout(resolve, 20));
    else answered.push(outcome);
  }
  throw new Error(`no budget refused in ${most} streams`);
}
