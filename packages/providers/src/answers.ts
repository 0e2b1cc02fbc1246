// @tollgate/providers/answers: for the response cache and the meter: each API family's answer forms (JSON written as
// its stream, a stream assembled into JSON), the usage reader's type, and the cost field the meter writes on an answer.
export { answerFormsOf, assembleStream, parseAnswer } from './answer-forms.js';
export type { AnswerForms } from './answer-forms.js';
export { withCostUsd } from './usage.js';
export type { ReadUsage } from './usage.js';
