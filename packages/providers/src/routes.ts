// @tollgate/providers/routes: for the gateway, which builds the provider routes from a config: the adapters by API
// and the upstream kinds they declare (each kind's wire), the model-kind check, the shape of a request's problem.
export { providerAdapters } from './adapters.js';
export { kindsSpeaking, upstreamKinds } from './upstream-kinds.js';
export type { UpstreamKind } from './upstream-kinds.js';
export type { ClientHeaders, ProviderAdapter, RouteMethods, UpstreamSettings, UpstreamWire } from './adapter.js';
export type { RequestProblem } from './adapter.js';
export { checkModelKind } from './estimate.js';
export { formFile, isUploadForm, readUploadForm, UploadFormError, withFormFields } from './upload-form.js';
export type { UploadForm } from './upload-form.js';
export type { UploadedFile } from './openai-transcriptions/audio-length.js';
export { realtimeAddedInput, realtimeOutputCap, realtimeUsage } from './openai-realtime/index.js';
export { MAX_MODEL_LENGTH } from './request-validation.js';
