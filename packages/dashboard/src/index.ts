// @tollgate/dashboard: the operator dashboard, an Express router of pages and their JSON behind the admin key.
export { dashboard } from './dashboard.js';
/** The keys a page of the dashboard shows at most: a tenant page's keys and their quotas are one page of the store. */
export { KEYS_PER_PAGE } from './keys-page.js';
export type { DashboardAlert, QuotaStatus } from './options.js';
