// A memory limit as a container runs under one: a cgroup of the bench's own, made for one process and removed after.
//
// Node sizes V8's heap from the memory its cgroup allows (uv_get_constrained_memory), not from the host's: under the
// Kubernetes manifest's limit (640 MiB) the heap's limit is about 332 MB with a young generation of a few MB, where on
// this 24 GiB host it is about 4 GB with 16 MB semi-spaces. A process measured on the bare host is not the process a
// deployment runs; this puts it where the manifest does.
import { mkdir, readFile, rmdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';

const MANIFEST = fileURLToPath(new URL('../../deploy/kubernetes/statefulset.yaml', import.meta.url));
const CGROUP_ROOT = '/sys/fs/cgroup';

/** Kubernetes quantities as the manifest writes memory: a number with a binary (Ki, Mi, Gi) or decimal suffix. */
function quantityBytes(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|k|M|G)?$/.exec(text.trim());
  if (!match) throw new Error(`not a memory quantity: ${text}`);
  const scale: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, k: 1e3, M: 1e6, G: 1e9 };
  return Math.round(Number(match[1]) * (match[2] ? scale[match[2]]! : 1));
}

/** The gateway container's memory limit in deploy/kubernetes/statefulset.yaml: what a deployed process runs under. */
export async function manifestMemoryLimit(): Promise<{ bytes: number; text: string }> {
  for (const document of parseAllDocuments(await readFile(MANIFEST, 'utf8'))) {
    const manifest = document.toJS() as {
      kind?: string;
      spec?: { template?: { spec?: { containers?: { resources?: { limits?: { memory?: string } } }[] } } };
    };
    if (manifest.kind !== 'StatefulSet') continue;
    const text = manifest.spec?.template?.spec?.containers?.[0]?.resources?.limits?.memory;
    if (text) return { bytes: quantityBytes(text), text };
  }
  throw new Error(`${MANIFEST} sets no memory limit on its container`);
}

export interface MemoryCgroup {
  /** The file a process writes its pid to, to join. */
  readonly procs: string;
  remove(): Promise<void>;
}

/**
 * A memory cgroup limited to `limitBytes`, on cgroup v2 (memory.max) or v1 (memory.limit_in_bytes). Throws when this
 * machine lets the bench make none (no write access to /sys/fs/cgroup): the caller says so rather than measure
 * without it.
 */
export async function makeMemoryCgroup(limitBytes: number, name: string): Promise<MemoryCgroup> {
  const v2 = await stat(path.join(CGROUP_ROOT, 'cgroup.controllers')).then(
    () => true,
    () => false,
  );
  const dir = v2 ? path.join(CGROUP_ROOT, name) : path.join(CGROUP_ROOT, 'memory', name);
  await mkdir(dir);
  try {
    await writeFile(path.join(dir, v2 ? 'memory.max' : 'memory.limit_in_bytes'), String(limitBytes));
  } catch (error) {
    await rmdir(dir).catch(() => undefined);
    throw error;
  }
  return {
    procs: path.join(dir, 'cgroup.procs'),
    // Empty once its process exited; a kernel may take a moment to let go of it.
    async remove() {
      for (let attempt = 0; ; attempt++) {
        try {
          await rmdir(dir);
          return;
        } catch (error) {
          if (attempt >= 20) throw error;
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      }
    },
  };
}
