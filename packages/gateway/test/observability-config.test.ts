// The proxy's `log` config, and a destination it cannot open answered as the config's error.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import { WITH_MOCK } from './helpers/mock-upstream.js';
import { createGateway } from '../src/app.js';
import { ConfigError, validateConfig } from '../src/config/index.js';

const dir = mkdtempSync(join(tmpdir(), 'tollgate-log-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the log config', () => {
  it('takes a level and a destination', () => {
    expect(validateConfig({ ...WITH_MOCK, log: { level: 'warn', destination: 'stdout' } }).log).toEqual({
      level: 'warn',
      destination: 'stdout',
    });
    expect(validateConfig({ ...WITH_MOCK, log: { destination: '/var/log/tollgate/access.log' } }).log).toEqual({
      destination: '/var/log/tollgate/access.log',
    });
  });

  it.each([
    [{ log: 'info' }, 'log must be an object'],
    [
      { log: { level: 'verbose' } },
      'log.level must be one of "fatal", "error", "warn", "info", "debug", "trace", "silent"',
    ],
    [{ log: { level: 'inf' } }, 'did you mean "info"?'],
    [{ log: { destination: '' } }, 'log.destination must be a non-empty string'],
    [{ log: { levle: 'info' } }, 'log has no field "levle"; did you mean "level"?'],
  ])('refuses %j naming the field', (config, message) => {
    expect(() => validateConfig(config)).toThrow(message);
  });

  it("stops the gateway's start with a config error naming log.destination when the file cannot be opened", () => {
    const file = join(dir, 'a-file');
    writeFileSync(file, '');
    const start = () => createGateway({ ...WITH_MOCK, log: { destination: join(file, 'under-a-file.log') } });
    expect(start).toThrow(ConfigError);
    expect(start).toThrow(/^Invalid proxy config: log\.destination: cannot open .*under-a-file\.log/);
  });
});
