// A provider answer in both of its forms, for the cache: a JSON answer written as the API's event stream, and a stream
// assembled into its JSON answer. The forms are the adapters' own (their family's); the cache says which it keeps.
import type { ProviderApi } from '@tollgate/core';
import { adapterFor, isProviderApi } from '@tollgate/providers';
import { answerFormsOf, assembleStream, parseAnswer } from '@tollgate/providers/answers';
import { sseEvent } from '@tollgate/providers/sse';
import type { AnswerForms } from '@tollgate/providers/answers';

/** An API whose answers the cache can store and replay in either form: one of a family it knows (see `isCachedApi`). */
export type CachedApi = ProviderApi;

type Json = Record<string, unknown>;

/** Forms the cache can keep an answer in: it can tell a whole answer, and one that streams can be assembled. */
type KeptForms = Required<Pick<AnswerForms, 'isComplete'>> & AnswerForms;

function keptForms(api: ProviderApi): KeptForms | undefined {
  const forms = answerFormsOf(adapterFor(api).family);
  if (!forms?.isComplete || (forms.toEvents !== undefined) !== (forms.fromEvents !== undefined)) return undefined;
  return forms as KeptForms;
}

function formsOf(api: CachedApi): KeptForms {
  const forms = keptForms(api);
  if (!forms) throw new TypeError(`The cache keeps no answers of ${api}: check isCachedApi() first.`);
  return forms;
}

export function isCachedApi(api: string): api is CachedApi {
  return isProviderApi(api) && keptForms(api) !== undefined;
}

/** A JSON answer that is whole and successful (an answer the provider finished), parsed; else undefined. */
export function completeJsonAnswer(api: CachedApi, text: string): Json | undefined {
  const answer = parseAnswer(text);
  return answer && formsOf(api).isComplete(answer) ? answer : undefined;
}

/** A stream that ran to its API's end, assembled into the JSON answer; undefined when it was cut or failed. */
export function streamToJson(api: CachedApi, stream: string): string | undefined {
  const answer = assembleStream(adapterFor(api).family, stream);
  return answer && JSON.stringify(answer);
}

/** A JSON answer written as the event stream the API would have sent. */
export function jsonToStream(api: CachedApi, json: string): string | undefined {
  const answer = parseAnswer(json);
  const events = answer && formsOf(api).toEvents?.(answer);
  return events?.map(({ event, data }) => sseEvent(data, event)).join('');
}
