// @tollgate/core/checks: for the packages whose middlewares refuse requests (limits, budgets, the guard, MCP): the
// steps of a pre-call check, how a refusal is noted and rendered, shadow mode, the one allowlist rule, and how an
// async handler's failure reaches next(err) on Express 4 and 5.
export { asyncRoute } from './async-route.js';
export type { CheckVerdict, PreCallCheck } from './pre-call-check.js';
export { answerCheck, attachPreCallCheck, preCallCheckOf } from './pre-call-check.js';
export type { ShadowRule } from './shadow.js';
export { shadowMode, shadowsRefusal } from './shadow.js';
export { noteRefusal, setErrorHeaders, toClientError } from './api-error.js';
export { isModelAllowed, isNameAllowed } from './provider-api.js';
export { resolveTierModels } from './tier-models.js';
