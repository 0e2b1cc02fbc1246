// A tool call priced per call (an MCP server's tool), as the route that makes it and the meter that charges it agree.

/** A tool call as its route priced it. */
export interface PricedToolCall {
  /** The tool as the record names it: `server/tool`. */
  tool: string;
  /** What one call costs, in nano-USD (0: free). */
  costNanoUsd: number;
}

/** How a call that reached the tool's server ended. */
export interface ToolCallOutcome {
  /** What an HTTP route would have answered: 200 for a result, 502/504 when the server failed or timed out. */
  status: number;
  /** True when the call is charged its price: the server answered it with a result that is not an error. */
  billed: boolean;
}

/** One metered tool call, from its charge to its record. */
export interface MeteredToolCall {
  /**
   * Right before the call goes to the tool's server: the function that reports its outcome (call it on every path),
   * or undefined when the request settled already (its client left): then the call must not be made.
   */
  start(): ((outcome: ToolCallOutcome) => void) | undefined;
}
