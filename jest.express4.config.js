// `pnpm test:express4`: the gateway's, MCP's, dashboard's and audit trail's HTTP tests (async routes' failures among
// them) again with Express 4 wherever they (and the packages' sources) import `express`: both majors are peers we
// declare, and Express 4 routes, parses and treats rejected promises in handlers differently (path-to-regexp 0.1,
// body-parser 1, no promise support).
import { realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import base from './jest.config.js';

const ROOT = dirname(fileURLToPath(import.meta.url));
// Express 4 is installed under the alias `express4` (core's devDependencies) beside Express 5.
const EXPRESS4 = realpathSync(join(ROOT, 'packages/core/node_modules/express4'));

/** @type {import('jest').Config} */
export default {
  ...base,
  roots: ['<rootDir>/packages'],
  testMatch: [
    '**/packages/gateway/test/gateway-router.test.ts',
    '**/packages/gateway/test/compose.test.ts',
    '**/packages/gateway/test/json-body.test.ts',
    '**/packages/gateway/test/healthz.test.ts',
    '**/packages/gateway/test/mcp-config.test.ts',
    '**/packages/mcp/test/stateless-revision.test.ts',
    '**/packages/gateway/test/async-routes.test.ts',
    '**/packages/gateway/test/admin-tenants.test.ts',
    '**/packages/dashboard/test/sign-in.test.ts',
    '**/packages/core/test/audit.test.ts',
  ],
  moduleNameMapper: { '^express$': join(EXPRESS4, 'index.js'), ...base.moduleNameMapper },
};
