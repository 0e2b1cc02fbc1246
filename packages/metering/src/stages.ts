// @tollgate/metering/stages: the meter's stage of the chain: a provider call's estimate, and its usage read.
import type { RequestHandler } from 'express';
import type { StageContribution, StageRoute } from '@tollgate/core/stages';

/**
 * `meter` on a provider call: the meter (`meter()`, made once over its sinks). A route that charges its own way (a
 * Realtime response, an MCP tool call) fills the stage itself.
 */
export function meterStages(meters: readonly RequestHandler[]): StageContribution<RequestHandler, StageRoute> {
  return { meter: (route) => (route.kind === 'provider' ? meters : undefined) };
}
