import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parse, stringify } from 'yaml';
import { parseDuration } from '../../src/config/duration.js';
import { queueName, waitListKey } from '../../src/queue/names.js';
import { RedisServer } from '../support/redis.js';
import { stage } from './dockerfile.js';
import { helm } from './helm-binary.js';
import { findManifest, parseManifests, validateManifest, type Manifest } from './manifests.js';

const CHART = join(process.cwd(), 'helm', 'imkit-bridge');
const RELEASE = 'rel';
const FULLNAME = 'rel-imkit-bridge';
const WEBHOOK_SECRET = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;

/** Stand-ins for the Secret the operator provides, for value sets that do not render one. */
const OPERATOR_SECRET = {
  AUDIT_BOT_TOKEN: 'token-audit-bot',
  IMKIT_CLIENT_KEY: 'client-key',
  AUDIT_WEBHOOK_SECRET: WEBHOOK_SECRET,
  CRM_WEBHOOK_SECRET: WEBHOOK_SECRET,
};

const CHART_SECRET_VALUES = {
  AUDIT_BOT_TOKEN: 'token-from-chart-secret',
  IMKIT_CLIENT_KEY: 'client-key-from-chart-secret',
  AUDIT_WEBHOOK_SECRET: WEBHOOK_SECRET,
};

const KEDA_WEBHOOKS = [
  { id: 'audit', url: 'https://audit.example.com/imkit', secret: '${env:AUDIT_WEBHOOK_SECRET}' },
  { id: 'crm_sync.v2', url: 'http://crm.internal:8080/hook', secret: '${env:CRM_WEBHOOK_SECRET}' },
];
const KEDA_DESTINATIONS = [{ id: 'audit-log', type: 'redis-stream' }];

const VALUE_SETS: Record<string, Record<string, unknown>> = {
  default: {},
  'all-in-one': { mode: 'all', secrets: { values: CHART_SECRET_VALUES } },
  'keda on': {
    config: {
      redis: { url: 'redis://redis.bridge.svc:6380/0', prefix: 'prod.bridge' },
      webhooks: KEDA_WEBHOOKS,
    },
    autoscaling: {
      keda: { enabled: true, minReplicas: 1, maxReplicas: 8, redis: { passwordFromEnv: 'REDIS_PASSWORD' } },
    },
  },
  'serviceMonitor on': {
    metrics: { serviceMonitor: { enabled: true, labels: { release: 'kube-prometheus' } } },
  },
  'PrometheusRule and Grafana dashboard on': {
    prometheusRule: { enabled: true, namespace: 'monitoring', labels: { release: 'kube-prometheus' } },
    grafanaDashboard: { enabled: true, labels: { team: 'chat' } },
  },
  'existing secret': { secrets: { existingSecret: 'bridge-secrets' } },
  'hpa on': { autoscaling: { hpa: { enabled: true, minReplicas: 3 } } },
  'console on': { adminToken: { existingSecret: 'bridge-admin', key: 'token' } },
  'Redis Sentinel with a password': {
    config: {
      redis: {
        sentinels: ['redis://redis-node-0.redis-headless:26379', 'redis://redis-node-1.redis-headless:26379'],
        name: 'mymaster',
        password: '${env:REDIS_PASSWORD}',
        waitReplicas: 1,
      },
    },
    secrets: { values: { ...CHART_SECRET_VALUES, REDIS_PASSWORD: 'redis-secret' } },
  },
  'Redis Cluster': {
    config: { redis: { cluster: ['redis://redis-cluster-0.redis-cluster-headless:6379'] } },
  },
  'token files': {
    config: { accounts: [{ id: 'audit-bot', tokenFile: '/var/run/secrets/imkit/audit-bot' }] },
    extraVolumes: [{ name: 'imkit-tokens', secret: { secretName: 'imkit-tokens' } }],
    extraVolumeMounts: [{ name: 'imkit-tokens', mountPath: '/var/run/secrets/imkit', readOnly: true }],
  },
};

let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'imkit-bridge-helm-'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function valuesFile(name: string, values: Record<string, unknown>): string {
  const file = join(dir, `${name.replace(/\W+/g, '-')}.yaml`);
  writeFileSync(file, stringify(values));
  return file;
}

function render(values: Record<string, unknown>, name = 'values'): Manifest[] {
  const result = helm(['template', RELEASE, CHART, '--namespace', 'bridge', '-f', valuesFile(name, values)]);
  if (result.status !== 0) throw new Error(`helm template failed: ${result.stderr}`);
  return parseManifests(result.stdout);
}

/** `helm template` with `--set` overrides, for renders that are expected to fail. */
function templateWith(...sets: string[]): ReturnType<typeof helm> {
  return helm(['template', RELEASE, CHART, ...sets.flatMap((set) => ['--set', set])]);
}

function deployments(manifests: readonly Manifest[]): Manifest[] {
  return manifests.filter((m) => m.kind === 'Deployment');
}

function bridgeYaml(manifests: readonly Manifest[]): string {
  const text = findManifest(manifests, 'ConfigMap', FULLNAME).data?.['bridge.yaml'];
  if (!text) throw new Error('ConfigMap has no bridge.yaml');
  return text;
}

/** A stand-in for a value the pod reads from a key of an operator's Secret (env valueFrom.secretKeyRef). */
const OPERATOR_SECRET_KEY_VALUE = 'operator-secret-key-value-0123456789';

/**
 * The environment a pod would get from the rendered Secret, or the operator's stand-in, plus the
 * variables its containers read from single Secret keys.
 */
function podEnv(manifests: readonly Manifest[]): Record<string, string> {
  const secret = manifests.find((m) => m.kind === 'Secret');
  const fromKeys = Object.fromEntries(
    deployments(manifests)
      .flatMap((d) => podOf(d).spec.containers.flatMap((c) => c.env ?? []))
      .filter((e) => e.valueFrom?.secretKeyRef)
      .map((e) => [e.name, OPERATOR_SECRET_KEY_VALUE]),
  );
  if (!secret) return { ...OPERATOR_SECRET, ...fromKeys };
  return {
    ...Object.fromEntries(
      Object.entries(secret.data ?? {}).map(([key, value]) => [
        key,
        Buffer.from(value, 'base64').toString('utf8'),
      ]),
    ),
    ...fromKeys,
  };
}

function configCheck(yamlText: string, env: Record<string, string>): { status: number; output: string } {
  const file = join(dir, `bridge-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, yamlText);
  const result = spawnSync(
    process.execPath,
    ['--import', 'tsx', 'src/cli.ts', 'config', 'check', '--config', file],
    {
      encoding: 'utf8',
      env: { PATH: process.env.PATH, ...env },
      timeout: 30_000,
    },
  );
  return { status: result.status ?? -1, output: `${result.stdout}${result.stderr}` };
}

interface Container {
  name: string;
  args: string[];
  ports: { name: string; containerPort: number }[];
  envFrom?: { secretRef: { name: string } }[];
  env?: { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }[];
  startupProbe?: { httpGet: { path: string; port: string } };
  livenessProbe?: { httpGet: { path: string; port: string } };
  readinessProbe?: { httpGet: { path: string; port: string } };
  resources: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext: Record<string, unknown>;
  volumeMounts: { name: string; mountPath: string }[];
}

interface PodSpec {
  terminationGracePeriodSeconds: number;
  securityContext: Record<string, unknown>;
  containers: Container[];
  volumes: { name: string; emptyDir?: object; configMap?: { name: string } }[];
}

function podOf(deployment: Manifest): { spec: PodSpec; annotations: Record<string, string> } {
  const template = (
    deployment.spec as { template: { metadata: { annotations: Record<string, string> }; spec: PodSpec } }
  ).template;
  return { spec: template.spec, annotations: template.metadata.annotations };
}

describe.each(Object.entries(VALUE_SETS))('chart with %s values', (name, values) => {
  let manifests: Manifest[];

  beforeAll(() => {
    manifests = render(values, name);
  });

  test('helm lint passes', () => {
    const result = helm(['lint', CHART, '--strict', '-f', valuesFile(`lint-${name}`, values)]);
    expect(result.status, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toContain('0 chart(s) failed');
  });

  test('every manifest validates against its Kubernetes schema', () => {
    expect(manifests.length).toBeGreaterThanOrEqual(5);
    for (const manifest of manifests) {
      expect(() => validateManifest(manifest), `${manifest.kind}/${manifest.metadata.name}`).not.toThrow();
    }
  });

  test('the rendered bridge config passes `imkit-bridge config check` with the pod environment', () => {
    const env = podEnv(manifests);
    const text = bridgeYaml(manifests);
    for (const [, variable] of text.matchAll(/\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}/g)) {
      expect(env, `\${env:${variable}} has a value in the pod's Secret`).toHaveProperty(variable!);
    }
    const { status, output } = configCheck(text, env);
    expect(status, output).toBe(0);
    expect(output).toContain(': ok');
  });

  test('pods are locked down, probed, bounded and given time to drain', () => {
    const config = parse(bridgeYaml(manifests)) as { server: { port: number }; shutdownTimeout: string };
    const runtime = stage('runtime');
    const configPath = runtime.env.IMKIT_BRIDGE_CONFIG!;
    expect(deployments(manifests).length).toBeGreaterThan(0);
    for (const deployment of deployments(manifests)) {
      const { spec } = podOf(deployment);
      const [container] = spec.containers;
      expect(spec.containers).toHaveLength(1);
      expect(spec.securityContext).toMatchObject({
        runAsNonRoot: true,
        seccompProfile: { type: 'RuntimeDefault' },
      });
      expect(container!.securityContext).toMatchObject({
        readOnlyRootFilesystem: true,
        allowPrivilegeEscalation: false,
        capabilities: { drop: ['ALL'] },
      });
      const tmp = container!.volumeMounts.find((m) => m.mountPath === '/tmp');
      expect(spec.volumes.find((v) => v.name === tmp?.name)?.emptyDir).toBeDefined();

      // The image's CMD with a role, reading the file where the image expects its config.
      expect(container!.args.slice(0, runtime.cmd.length)).toEqual(runtime.cmd);
      expect(container!.args.slice(runtime.cmd.length)).toEqual([
        '--role',
        expect.stringMatching(/^(all|ingest|worker)$/),
        '--config',
        configPath,
      ]);
      const configMount = container!.volumeMounts.find((m) => m.mountPath === dirname(configPath));
      expect(spec.volumes.find((v) => v.name === configMount?.name)?.configMap?.name).toBe(FULLNAME);

      const admin = container!.ports.find((p) => p.name === 'admin');
      expect(admin?.containerPort).toBe(config.server.port);
      expect(container!.startupProbe?.httpGet).toEqual({ path: '/healthz', port: 'admin' });
      expect(container!.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: 'admin' });
      expect(container!.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 'admin' });

      expect(container!.resources.requests).toMatchObject({
        cpu: expect.any(String),
        memory: expect.any(String),
      });
      expect(container!.resources.limits).toMatchObject({ memory: expect.any(String) });
      expect(spec.terminationGracePeriodSeconds * 1000).toBeGreaterThan(
        parseDuration(config.shutdownTimeout)!,
      );
    }
  });

  test('a PodDisruptionBudget exists exactly for Deployments that keep more than one replica', () => {
    const hpa = manifests.find((m) => m.kind === 'HorizontalPodAutoscaler');
    const scaled = manifests.find((m) => m.kind === 'ScaledObject');
    for (const deployment of deployments(manifests)) {
      const spec = deployment.spec as { replicas?: number };
      const isTarget = [hpa, scaled].some(
        (a) =>
          (a?.spec as { scaleTargetRef?: { name: string } } | undefined)?.scaleTargetRef?.name ===
          deployment.metadata.name,
      );
      const minimum = isTarget
        ? ((hpa?.spec as { minReplicas?: number } | undefined)?.minReplicas ??
          (scaled?.spec as { minReplicaCount: number }).minReplicaCount)
        : spec.replicas!;
      const pdb = manifests.find(
        (m) => m.kind === 'PodDisruptionBudget' && m.metadata.name === deployment.metadata.name,
      );
      expect(pdb !== undefined, `${deployment.metadata.name} (min ${minimum})`).toBe(minimum > 1);
    }
  });
});

describe('chart behaviour', () => {
  test('default is split: 2 active-active ingest replicas and an independent worker Deployment', () => {
    const manifests = render({}, 'split');
    const ingest = findManifest(manifests, 'Deployment', `${FULLNAME}-ingest`);
    const worker = findManifest(manifests, 'Deployment', `${FULLNAME}-worker`);
    expect((ingest.spec as { replicas: number }).replicas).toBe(2);
    expect(podOf(ingest).spec.containers[0]!.args).toContain('ingest');
    expect(podOf(worker).spec.containers[0]!.args).toContain('worker');
    expect(deployments(manifests)).toHaveLength(2);
    // Rolling upgrades add a pod before removing one, so an account is never without a socket.
    expect(ingest.spec).toMatchObject({ strategy: { rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } } });
    const selectors = deployments(manifests).map((d) => JSON.stringify(d.spec!.selector));
    expect(new Set(selectors).size).toBe(2);
  });

  test('all-in-one mode renders a single Deployment with role all and no PDB at one replica', () => {
    const manifests = render({ mode: 'all' }, 'all');
    expect(deployments(manifests).map((d) => d.metadata.name)).toEqual([`${FULLNAME}-all`]);
    expect(podOf(deployments(manifests)[0]!).spec.containers[0]!.args).toContain('all');
    expect(manifests.filter((m) => m.kind === 'PodDisruptionBudget')).toEqual([]);
  });

  test('an existing Secret is used as env and the chart creates none', () => {
    const manifests = render(
      { secrets: { existingSecret: 'bridge-secrets', values: { IGNORED: 'x' } } },
      'existing',
    );
    expect(manifests.filter((m) => m.kind === 'Secret')).toEqual([]);
    for (const deployment of deployments(manifests)) {
      expect(podOf(deployment).spec.containers[0]!.envFrom).toEqual([
        { secretRef: { name: 'bridge-secrets' } },
      ]);
    }
  });

  test('adminToken.existingSecret turns the console on: every pod reads ADMIN_TOKEN from that key, the config refers to it', () => {
    const off = render({}, 'console-off');
    expect(parse(bridgeYaml(off))).toMatchObject({ server: { host: '0.0.0.0', port: 9464 } });
    expect(parse(bridgeYaml(off)).server).not.toHaveProperty('adminToken');
    for (const deployment of deployments(off)) {
      expect(podOf(deployment).spec.containers[0]!.env ?? []).toEqual([]);
    }

    const extraEnv = [{ name: 'NODE_OPTIONS', value: '--max-old-space-size=256' }];
    const on = render(
      { adminToken: { existingSecret: 'bridge-admin', key: 'token' }, extraEnv },
      'console-on',
    );
    expect(parse(bridgeYaml(on))).toMatchObject({ server: { adminToken: '${env:ADMIN_TOKEN}' } });
    expect(deployments(on)).toHaveLength(2);
    for (const deployment of deployments(on)) {
      expect(podOf(deployment).spec.containers[0]!.env).toEqual([
        { name: 'ADMIN_TOKEN', valueFrom: { secretKeyRef: { name: 'bridge-admin', key: 'token' } } },
        ...extraEnv,
      ]);
    }
    const { status, output } = configCheck(bridgeYaml(on), podEnv(on));
    expect(status, output).toBe(0);
    expect(output).toContain('console on at /');
    expect(output).not.toContain(OPERATOR_SECRET_KEY_VALUE);
  });

  test('a chart-created Secret carries the values, base64-encoded, and pods read it as env', () => {
    const manifests = render({ secrets: { values: CHART_SECRET_VALUES } }, 'created');
    const secret = findManifest(manifests, 'Secret', FULLNAME);
    expect(podEnv(manifests)).toEqual(CHART_SECRET_VALUES);
    expect(JSON.stringify(findManifest(manifests, 'ConfigMap', FULLNAME))).not.toContain(
      'token-from-chart-secret',
    );
    for (const deployment of deployments(manifests)) {
      expect(podOf(deployment).spec.containers[0]!.envFrom).toEqual([
        { secretRef: { name: secret.metadata.name } },
      ]);
    }
  });

  test('changing config or secrets changes the pod checksums, so pods roll', () => {
    const annotations = (values: Record<string, unknown>) =>
      deployments(render(values, 'checksum')).map((d) => podOf(d).annotations);
    const base = annotations({ secrets: { values: CHART_SECRET_VALUES } });
    const newConfig = annotations({
      secrets: { values: CHART_SECRET_VALUES },
      config: { dedupWindow: '20m' },
    });
    const newSecret = annotations({
      secrets: { values: { ...CHART_SECRET_VALUES, AUDIT_BOT_TOKEN: 'rotated' } },
    });
    base.forEach((a, i) => {
      expect(a['checksum/config']).toMatch(/^[0-9a-f]{64}$/);
      expect(a['checksum/secret']).toMatch(/^[0-9a-f]{64}$/);
      expect(newConfig[i]!['checksum/config']).not.toBe(a['checksum/config']);
      expect(newConfig[i]!['checksum/secret']).toBe(a['checksum/secret']);
      expect(newSecret[i]!['checksum/secret']).not.toBe(a['checksum/secret']);
      expect(newSecret[i]!['checksum/config']).toBe(a['checksum/config']);
    });
  });

  test('ServiceMonitor scrapes /metrics on the admin port of the chart Service', () => {
    const manifests = render({ metrics: { serviceMonitor: { enabled: true } } }, 'sm');
    const monitor = findManifest(manifests, 'ServiceMonitor', FULLNAME);
    const service = findManifest(manifests, 'Service', FULLNAME);
    const spec = monitor.spec as {
      selector: { matchLabels: Record<string, string> };
      endpoints: { port: string; path: string }[];
    };
    expect(service.metadata.labels).toMatchObject(spec.selector.matchLabels);
    expect(spec.endpoints).toEqual([expect.objectContaining({ port: 'admin', path: '/metrics' })]);
    expect((service.spec as { ports: { name: string }[] }).ports.map((p) => p.name)).toContain('admin');
    // An unready pod (an account down) must still be scraped.
    expect(service.spec).toHaveProperty('publishNotReadyAddresses', true);
  });

  test('HPA targets the worker Deployment, which then leaves replicas to the autoscaler', () => {
    const manifests = render({ autoscaling: { hpa: { enabled: true } } }, 'hpa');
    const hpa = findManifest(manifests, 'HorizontalPodAutoscaler', `${FULLNAME}-worker`);
    expect(hpa.spec).toMatchObject({ scaleTargetRef: { kind: 'Deployment', name: `${FULLNAME}-worker` } });
    expect(findManifest(manifests, 'Deployment', `${FULLNAME}-worker`).spec).not.toHaveProperty('replicas');
    expect(findManifest(manifests, 'Deployment', `${FULLNAME}-ingest`).spec).toHaveProperty('replicas', 2);
  });

  test('inconsistent autoscaling settings fail the render with a reason', () => {
    const both = templateWith('autoscaling.keda.enabled=true', 'autoscaling.hpa.enabled=true');
    expect(both.status).not.toBe(0);
    expect(both.stderr).toContain('exclusive');
    const allMode = templateWith('mode=all', 'autoscaling.hpa.enabled=true');
    expect(allMode.status).not.toBe(0);
    expect(allMode.stderr).toContain('mode: split');
    const zero = templateWith('autoscaling.keda.enabled=true', 'autoscaling.keda.minReplicas=0');
    expect(zero.status).not.toBe(0);
  });

  test('ingest.copies and ingest.lease reach the bridge config; replicas stay independent; copies above replicas fail', () => {
    const defaults = parse(bridgeYaml(render({}, 'copies-default'))) as { ingest: unknown };
    expect(defaults.ingest).toEqual({ copies: 'all', lease: '15s', catchUpConcurrency: 16 });
    const manifests = render(
      { ingest: { copies: 2, lease: '10s', catchUpConcurrency: 8, replicas: 4 } },
      'copies-2',
    );
    expect((parse(bridgeYaml(manifests)) as { ingest: unknown }).ingest).toEqual({
      copies: 2,
      lease: '10s',
      catchUpConcurrency: 8,
    });
    expect(findManifest(manifests, 'Deployment', `${FULLNAME}-ingest`).spec).toHaveProperty('replicas', 4);
    // The PDB lets one ingest pod go at a time: 3 of 4 stay, at least the 2 copies.
    expect(findManifest(manifests, 'PodDisruptionBudget', `${FULLNAME}-ingest`).spec).toMatchObject({
      maxUnavailable: 1,
    });
    expect(configCheck(bridgeYaml(manifests), podEnv(manifests)).output).toContain(
      'ingest: each account on 2 live ingest processes, lease 10s',
    );
    const tooMany = templateWith('ingest.copies=3', 'ingest.replicas=2');
    expect(tooMany.status).not.toBe(0);
    expect(tooMany.stderr).toContain('ingest.copies (3) must not exceed the ingest replicas (2)');
    expect(templateWith('ingest.copies=0').status).not.toBe(0);
  });

  test('NOTES.txt names the Deployments to check and warns when no Secret feeds ${env:...}', () => {
    const notes = (args: string[]) => {
      const result = helm(['install', RELEASE, CHART, '--dry-run=client', '--namespace', 'bridge', ...args]);
      expect(result.status, result.stderr).toBe(0);
      return result.stdout.slice(result.stdout.indexOf('NOTES:'));
    };
    const split = notes([]);
    expect(split).toContain(`deploy/${FULLNAME}-worker -- node dist/cli.js dlq list`);
    expect(split).toContain('WARNING: neither secrets.existingSecret nor secrets.values is set');
    const all = notes(['--set', 'mode=all', '--set', 'secrets.existingSecret=bridge-secrets']);
    expect(all).toContain(`deploy/${FULLNAME}-all -- node dist/cli.js dlq list`);
    expect(all).not.toContain('WARNING');
    expect(all).toContain('rollout restart');
    expect(all).not.toContain('Console:');
    const withConsole = notes(['--set', 'adminToken.existingSecret=bridge-admin']);
    expect(withConsole).toContain('Console: with the port-forward above, open http://localhost:9464/');
    expect(withConsole).toContain('Secret "bridge-admin", key "admin-token"');
    expect(withConsole).toContain('Authorization: Bearer $ADMIN_TOKEN');
  });

  test.each([
    ['config.redis.prefx=x', 'prefx'],
    ['ingest.replica=3', 'replica'],
    ['metrics.serviceMonitor.enable=true', 'enable'],
    ['grafanaDashboard.enable=true', 'enable'],
    ['prometheusRule.label.team=chat', 'label'],
    ['mode=both', 'mode'],
    ['adminToken.secret=x', 'secret'],
  ])('the values schema rejects a typo: --set %s', (setting, mention) => {
    const result = templateWith(setting);
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain(mention);
    const lint = helm(['lint', CHART, '--set', setting]);
    expect(lint.status).not.toBe(0);
  });
});

describe('Redis topologies in the chart', () => {
  const tlsValues = {
    config: { redis: { url: 'rediss://redis.bridge.svc:6380', password: '${env:REDIS_PASSWORD}' } },
    redisTls: { existingSecret: 'redis-client-tls', clientCertificate: true },
  };

  test('a TLS Secret is mounted read-only in every pod and the bridge config points at its files', () => {
    const manifests = render(tlsValues, 'redis-tls');
    const redis = (parse(bridgeYaml(manifests)) as { redis: Record<string, unknown> }).redis;
    expect(redis).toEqual({
      url: 'rediss://redis.bridge.svc:6380',
      password: '${env:REDIS_PASSWORD}',
      prefix: 'imkit-bridge',
      tls: {
        ca: '/etc/imkit-bridge/redis-tls/ca.crt',
        cert: '/etc/imkit-bridge/redis-tls/tls.crt',
        key: '/etc/imkit-bridge/redis-tls/tls.key',
      },
    });
    for (const deployment of deployments(manifests)) {
      const { spec } = podOf(deployment);
      expect(spec.volumes).toContainEqual({ name: 'redis-tls', secret: { secretName: 'redis-client-tls' } });
      expect(spec.containers[0]!.volumeMounts).toContainEqual({
        name: 'redis-tls',
        mountPath: '/etc/imkit-bridge/redis-tls',
        readOnly: true,
      });
    }
    const caOnly = render({ ...tlsValues, redisTls: { existingSecret: 'redis-ca' } }, 'redis-ca');
    expect((parse(bridgeYaml(caOnly)) as { redis: { tls: unknown } }).redis.tls).toEqual({
      ca: '/etc/imkit-bridge/redis-tls/ca.crt',
    });
  });

  test('values with two topologies, sentinels without a name, or TLS files with redis:// fail the render', () => {
    const both = templateWith(
      'config.redis.url=redis://r:6379',
      'config.redis.sentinels[0]=redis://s:26379',
      'config.redis.name=m',
    );
    expect(both.status).not.toBe(0);
    expect(both.stderr).toContain('/config/redis');
    const noName = templateWith('config.redis.sentinels[0]=redis://s:26379');
    expect(noName.status).not.toBe(0);
    const plainTls = templateWith('redisTls.existingSecret=redis-ca');
    expect(plainTls.status).not.toBe(0);
    expect(plainTls.stderr).toContain('redisTls.existingSecret needs rediss:// addresses');
  });

  test('KEDA watches each queue with the trigger of the topology: redis-sentinel and redis-cluster', () => {
    const keda = { keda: { enabled: true } };
    const sentinel = render(
      {
        ...VALUE_SETS['Redis Sentinel with a password'],
        config: {
          ...(VALUE_SETS['Redis Sentinel with a password']!.config as object),
          redis: {
            sentinels: ['rediss://s0.redis:26379', 'rediss://s1.redis:26379'],
            name: 'mymaster',
            password: '${env:REDIS_PASSWORD}',
            prefix: 'prod',
          },
          webhooks: KEDA_WEBHOOKS,
        },
        autoscaling: keda,
      },
      'keda-sentinel',
    );
    const sentinelTriggers = (
      findManifest(sentinel, 'ScaledObject', `${FULLNAME}-worker`).spec as {
        triggers: { type: string; metadata: Record<string, string> }[];
      }
    ).triggers;
    expect(sentinelTriggers.map((t) => t.metadata.listName)).toEqual(
      KEDA_WEBHOOKS.map((w) => waitListKey('prod', w.id)),
    );
    for (const trigger of sentinelTriggers) {
      expect(trigger).toEqual({
        type: 'redis-sentinel',
        name: expect.any(String),
        metadata: {
          addresses: 's0.redis:26379,s1.redis:26379',
          sentinelMaster: 'mymaster',
          databaseIndex: '0',
          listName: expect.any(String),
          listLength: '100',
          enableTLS: 'true',
          passwordFromEnv: 'REDIS_PASSWORD',
          sentinelPasswordFromEnv: 'REDIS_PASSWORD',
        },
      });
    }

    const cluster = render(
      {
        config: {
          redis: { cluster: ['redis://n0.redis:6379', 'redis://n1.redis'], prefix: 'prod' },
          webhooks: KEDA_WEBHOOKS,
          destinations: KEDA_DESTINATIONS,
        },
        autoscaling: keda,
      },
      'keda-cluster',
    );
    const clusterTriggers = (
      findManifest(cluster, 'ScaledObject', `${FULLNAME}-worker`).spec as {
        triggers: { type: string; metadata: Record<string, string> }[];
      }
    ).triggers;
    expect(clusterTriggers.map((t) => t.metadata.listName)).toEqual([
      ...KEDA_WEBHOOKS.map((w) => waitListKey('prod', w.id, 'webhook', true)),
      ...KEDA_DESTINATIONS.map((d) => waitListKey('prod', d.id, 'destination', true)),
    ]);
    expect(clusterTriggers[0]!.metadata.listName).toBe('prod:{webhook-audit}:wait');
    for (const trigger of clusterTriggers) {
      expect(trigger.type).toBe('redis-cluster');
      expect(trigger.metadata).toMatchObject({
        addresses: 'n0.redis:6379,n1.redis:6379',
        enableTLS: 'false',
      });
      expect(trigger.metadata).not.toHaveProperty('passwordFromEnv');
    }
  });
});

describe('KEDA trigger keys', () => {
  const kedaOn = VALUE_SETS['keda on'] as { config: Record<string, unknown> };
  const values = { ...kedaOn, config: { ...kedaOn.config, destinations: KEDA_DESTINATIONS } };
  let manifests: Manifest[];
  let triggers: { type: string; metadata: Record<string, string> }[];

  beforeAll(() => {
    manifests = render(values, 'keda');
    const scaled = findManifest(manifests, 'ScaledObject', `${FULLNAME}-worker`);
    triggers = (scaled.spec as { triggers: typeof triggers }).triggers;
  });

  test('one redis list trigger per webhook and destination, keyed like src/queue/names.ts, scaling the workers', () => {
    const scaled = findManifest(manifests, 'ScaledObject', `${FULLNAME}-worker`);
    expect(scaled.spec).toMatchObject({
      scaleTargetRef: { name: `${FULLNAME}-worker` },
      minReplicaCount: 1,
      maxReplicaCount: 8,
    });
    expect(findManifest(manifests, 'Deployment', `${FULLNAME}-worker`).spec).not.toHaveProperty('replicas');
    expect(triggers.map((t) => t.metadata.listName)).toEqual([
      ...KEDA_WEBHOOKS.map((w) => waitListKey('prod.bridge', w.id)),
      ...KEDA_DESTINATIONS.map((d) => waitListKey('prod.bridge', d.id, 'destination')),
    ]);
    for (const trigger of triggers) {
      expect(trigger.type).toBe('redis');
      expect(trigger.metadata).toMatchObject({
        address: 'redis.bridge.svc:6380',
        listLength: '100',
        enableTLS: 'false',
        passwordFromEnv: 'REDIS_PASSWORD',
      });
    }
  });

  test('the default prefix and a rediss:// URL give the default keys and TLS', () => {
    const manifests = render(
      { config: { redis: { url: 'rediss://cache.example.com' } }, autoscaling: { keda: { enabled: true } } },
      'keda-default',
    );
    const scaled = findManifest(manifests, 'ScaledObject', `${FULLNAME}-worker`);
    const [trigger] = (scaled.spec as { triggers: typeof triggers }).triggers;
    expect(trigger!.metadata).toMatchObject({
      listName: waitListKey('imkit-bridge', 'audit'),
      address: 'cache.example.com:6379',
      enableTLS: 'true',
    });
  });

  test('a job BullMQ enqueues for each webhook lands in exactly the list its trigger watches', async () => {
    const server = await RedisServer.start();
    const redis = new Redis(server.url, { maxRetriesPerRequest: null });
    const queues = [
      ...KEDA_WEBHOOKS.map((w) => queueName(w.id)),
      ...KEDA_DESTINATIONS.map((d) => queueName(d.id, 'destination')),
    ].map(
      (name) =>
        new Queue(name, {
          connection: { host: '127.0.0.1', port: server.port },
          prefix: 'prod.bridge',
        }),
    );
    try {
      await queues[0]!.add('chat message', { id: 'evt_one' });
      await queues[1]!.add('chat message', { id: 'evt_two' });
      await queues[1]!.add('chat message', { id: 'evt_three' });
      await queues[2]!.add('chat message', { id: 'evt_four' });
      const lengths = await Promise.all(triggers.map((t) => redis.llen(t.metadata.listName!)));
      expect(lengths).toEqual([1, 2, 1]);
      expect(await redis.type(triggers[0]!.metadata.listName!)).toBe('list');
    } finally {
      await Promise.all(queues.map((q) => q.close()));
      await redis.quit();
      await server.close();
    }
  });
});
