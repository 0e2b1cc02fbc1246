// What machine and runtime produced the figures, for the head of RESULTS.md.
import os from 'node:os';

interface MachineInfo {
  cpu: string;
  cores: number;
  memory: string;
  node: string;
  platform: string;
  redis?: string;
}

export function describeMachine(): MachineInfo {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    memory: `${(os.totalmem() / 1024 ** 3).toFixed(1)} GiB`,
    node: process.version,
    platform: `${os.type()} ${os.release()} ${os.arch()}`,
  };
}
