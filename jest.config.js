// One jest run over every package's tests and the root test/ folder, native ESM, swc transform.
/** @type {import('jest').Config} */
export default {
  testEnvironment: 'node',
  roots: ['<rootDir>/packages', '<rootDir>/examples', '<rootDir>/test'],
  testMatch: ['**/test/**/*.test.ts'],
  extensionsToTreatAsEsm: ['.ts'],
  transform: {
    '^.+\\.ts$': [
      '@swc/jest',
      {
        jsc: { parser: { syntax: 'typescript' }, target: 'es2022' },
        module: { type: 'es6' },
        sourceMaps: 'inline',
      },
    ],
  },
  moduleNameMapper: {
    '^@tollgate/([a-z-]+)$': '<rootDir>/packages/$1/src/index.ts',
    // Subpath doors (`@tollgate/metering/postgres`): one entry file each, named for the subpath.
    '^@tollgate/([a-z-]+)/([a-z-]+)$': '<rootDir>/packages/$1/src/$2.ts',
    '^(\\.{1,2}/.*)\\.js$': '$1',
  },
  globalSetup: '<rootDir>/test/setup/global-setup.js',
  testTimeout: 30000,
  // On two cores jest runs every file in band, in its own process: a test that fails before its own cleanup (a server
  // it listens on, a client it holds) would keep that process alive after the run, and CI would wait until its limit
  // (stop 39 ran out of time this way). The verdict is known by then; exit with it.
  forceExit: true,
  // The files run in a worker process that is replaced once it holds more than this after a file: one process
  // running every file in band grew past V8's heap limit (each ESM test file's modules stay reachable) and CI
  // aborted 19 minutes in, with the modules of every file before it. A fresh worker starts from nothing.
  workerIdleMemoryLimit: '1.5GB',
};
