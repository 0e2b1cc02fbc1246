// @tollgate/core/store-contracts: for store backends (@tollgate/redis) and the middlewares that drive stores (limits,
// budgets, keys): the store contracts, the in-memory stores' building blocks, the input guards, a deadline per call,
// and slices of the event loop for work over many entries (TimeSlice).
export type {
  ApiKeyRecord,
  FixedWindowCounter,
  HeldAmount,
  KeyChange,
  KeyChangeOutcome,
  KeyPage,
  KeyPageQuery,
  KeyStore,
  LedgerCallOptions,
  LedgerScope,
  RebuildGate,
  ReservationLedger,
  ReserveRequest,
  ReserveResult,
  ScopeBalance,
  ScopeRef,
  ScopeUsage,
  SettleResult,
  SettledRecord,
  SpendCorrection,
  WindowCounter,
  WindowResult,
} from './stores.js';
export {
  budgetedKeys,
  changeKey,
  GLOBAL_SLOT,
  keyBudgetOf,
  keyBudgetScope,
  SpendNotRebuiltError,
  scopeKeyOf,
  scopeRemaining,
  spentBeyondCredit,
  windowPhase,
  windowStartAt,
} from './stores.js';
export {
  compareKeyIds,
  expiringKeysWith,
  keyPage,
  keyPageStart,
  keyPageWith,
  mergeKeyPages,
  pageOfSorted,
  soonestExpiring,
} from './key-pages.js';
export type { AuthMethod } from './types.js';
export {
  assertReserveNumbers,
  assertSettledRecords,
  assertSpendCorrection,
  assertStoreAmount,
  assertStoreIncrease,
  assertStoreNumber,
} from './store-input.js';
export {
  deepFreeze,
  MemoryKeyStore,
  MemoryReservationLedger,
  MemoryWindowCounter,
  unalteredMemoryStore,
} from './memory-stores.js';
export { DeadlineTimer, spareAfterStall, withTimeout, type Deadlined } from './timeout.js';
export { BESIDE_REQUESTS, besideRequests, TimeSlice } from './time-slice.js';
export { ShardedMap } from './sharded-map.js';
export type { TurnShare } from './time-slice.js';
export { counterCalls, fixedWindowCalls, ledgerCalls } from './store-calls.js';
export type { CounterCalls, FixedWindowCalls, LedgerCalls } from './store-calls.js';
export { promised, whenReady } from './maybe-promise.js';
export type { MaybePromise } from './maybe-promise.js';
export type { BlockStores } from './block-stores.js';
export { RETIRE_WAIT_MS } from './block-stores.js';
export type { LeasedStores, OutagePolicy } from './leased-stores.js';
