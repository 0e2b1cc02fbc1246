// @tollgate/dashboard: the operator dashboard, an Express router of pages and their JSON behind the admin key.
export { dashboard } from './dashboard.js';
export type { DashboardAlert, DashboardBudgets, DashboardOptions, QuotaQuery, QuotaStatus } from './options.js';
export type { OverviewData, SpendRow } from './overview-page.js';
export type { TenantData } from './tenant-page.js';
export type { KeysData } from './keys-page.js';
export type { RequestsData } from './requests-page.js';
export type { ProvidersData } from './providers-page.js';
export type { BarState, ChartData } from './layout.js';
export type { KeyState, ListedKey } from './sources.js';
