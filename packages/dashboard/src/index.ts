// @tollgate/dashboard: the operator dashboard, an Express router of pages and their JSON behind the admin key.
export { dashboard } from './dashboard.js';
export type { DashboardAlert, QuotaStatus } from './options.js';
