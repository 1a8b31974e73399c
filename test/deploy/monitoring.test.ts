import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parse, stringify } from 'yaml';
import { World } from '../e2e/world.js';
import { waitFor } from '../support/redis.js';
import { helm } from './helm-binary.js';
import { findManifest, parseManifests, validateManifest, type Manifest } from './manifests.js';

const CHART = join(process.cwd(), 'helm', 'imkit-bridge');
const RULES_FILE = join(CHART, 'rules', 'imkit-bridge.rules.yaml');
const DASHBOARD_FILE = join(CHART, 'dashboards', 'imkit-bridge.json');
const FULLNAME = 'rel-imkit-bridge';

/** Labels Prometheus adds to every series it scrapes through the chart's ServiceMonitor. */
const TARGET_LABELS = ['namespace', 'pod'];

interface RuleGroups {
  groups: {
    name: string;
    rules: {
      alert?: string;
      expr: string;
      labels?: Record<string, string>;
      annotations?: Record<string, string>;
    }[];
  }[];
}

interface Panel {
  type: string;
  id: number;
  title: string;
  datasource?: { type: string; uid: string };
  targets?: { expr: string; datasource?: { uid: string } }[];
}

interface Dashboard {
  uid: string;
  panels: Panel[];
  templating: { list: { name: string; query: string | { query: string } }[] };
}

/** What a scrape of the bridge's /metrics exposes: series names and the labels each was seen with. */
interface Exposition {
  families: Map<string, string>;
  series: Set<string>;
  labels: Map<string, Set<string>>;
}

function parseExposition(text: string): Exposition {
  const families = new Map<string, string>();
  const labels = new Map<string, Set<string>>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) families.set(type[1]!, type[2]!);
    const sample = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? /.exec(line);
    if (!sample || line.startsWith('#')) continue;
    const names = labels.get(sample[1]!) ?? new Set<string>();
    for (const [, label] of (sample[2] ?? '').matchAll(/(\w+)="/g)) names.add(label!);
    labels.set(sample[1]!, names);
  }
  const suffixes: Record<string, string[]> = {
    histogram: ['_bucket', '_sum', '_count'],
    summary: ['', '_sum', '_count'],
  };
  const series = new Set(
    [...families].flatMap(([name, type]) => (suffixes[type] ?? ['']).map((suffix) => name + suffix)),
  );
  return { families, series, labels };
}

function metricsIn(expr: string): string[] {
  return [...expr.matchAll(/\bimkit_bridge_\w+/g)].map((m) => m[0]);
}

/** Label names an expression selects or groups by, with the metric they belong to when known. */
function labelsIn(expr: string): { metric?: string; label: string }[] {
  const found: { metric?: string; label: string }[] = [];
  for (const [, metric, matchers] of expr.matchAll(/\b(imkit_bridge_\w+)\s*\{([^}]*)\}/g)) {
    for (const [, label] of matchers!.matchAll(/(\w+)\s*(?:=~|!~|!=|=)/g))
      found.push({ metric, label: label! });
  }
  for (const [, metric, label] of expr.matchAll(/label_values\((imkit_bridge_\w+)[^,]*,\s*(\w+)\s*\)/g)) {
    found.push({ metric, label: label! });
  }
  for (const [, list] of expr.matchAll(/\b(?:by|without)\s*\(([^)]*)\)/g)) {
    for (const label of list!.split(',').map((l) => l.trim())) if (label) found.push({ label });
  }
  return found;
}

function dashboardExprs(dashboard: Dashboard): { where: string; expr: string }[] {
  return [
    ...dashboard.panels.flatMap((panel) =>
      (panel.targets ?? []).map((t) => ({ where: `panel "${panel.title}"`, expr: t.expr })),
    ),
    ...dashboard.templating.list.flatMap((variable) => {
      const query = typeof variable.query === 'string' ? variable.query : variable.query.query;
      return variable.name === 'datasource' ? [] : [{ where: `variable $${variable.name}`, expr: query }];
    }),
  ];
}

function ruleExprs(groups: RuleGroups): { where: string; expr: string }[] {
  return groups.groups.flatMap((group) =>
    group.rules.map((rule) => ({ where: `rule ${rule.alert}`, expr: rule.expr })),
  );
}

let dir: string;
let manifests: Manifest[];
let rule: Manifest;
let dashboardMap: Manifest;
let dashboard: Dashboard;
let exposition: Exposition;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'imkit-bridge-monitoring-'));
  const values = join(dir, 'values.yaml');
  writeFileSync(
    values,
    stringify({
      prometheusRule: { enabled: true, labels: { release: 'kube-prometheus' } },
      grafanaDashboard: {
        enabled: true,
        namespace: 'monitoring',
        annotations: { grafana_folder: 'Bridges' },
      },
    }),
  );
  const rendered = helm(['template', 'rel', CHART, '--namespace', 'bridge', '-f', values]);
  if (rendered.status !== 0) throw new Error(`helm template failed: ${rendered.stderr}`);
  manifests = parseManifests(rendered.stdout);
  rule = findManifest(manifests, 'PrometheusRule', FULLNAME);
  dashboardMap = findManifest(manifests, 'ConfigMap', `${FULLNAME}-dashboard`);
  dashboard = JSON.parse(dashboardMap.data!['imkit-bridge.json']!) as Dashboard;

  // A real bridge that has been refused once, then received and delivered an event, so its
  // labelled series carry samples (reconnects among them). It shares accounts (copies: 1), so the
  // membership and account-move series carry samples too.
  const world = await World.start();
  try {
    world.sim.rejectAllTokens = true;
    const bridge = await world.bridge(world.config({ top: { ingest: { copies: 1, lease: '3s' } } }));
    await waitFor(async () => /imkit_bridge_reconnects_total\{/.test((await bridge.get('/metrics')).body), {
      what: 'a refused session counted as a reconnect',
    });
    world.sim.rejectAllTokens = false;
    await world.connected();
    world.emitTyping(1, 'metrics');
    await world.waitDelivered(1, 'typing');
    exposition = parseExposition((await bridge.get('/metrics')).body);
  } finally {
    await world.close();
  }
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('alert rules', () => {
  test('the PrometheusRule validates against its model and carries the chart rules file', () => {
    expect(() => validateManifest(rule)).not.toThrow();
    expect(rule.metadata.labels).toMatchObject({ release: 'kube-prometheus' });
    expect(rule.spec).toEqual(parse(readFileSync(RULES_FILE, 'utf8')));
    for (const { rules } of (rule.spec as unknown as RuleGroups).groups) {
      for (const r of rules) {
        expect(r.labels?.severity, r.alert).toMatch(/^(critical|warning|info)$/);
      }
    }
  });

  test('`promtool check rules` passes on the rendered rule group', () => {
    const file = join(dir, 'rules.yaml');
    writeFileSync(file, stringify(rule.spec));
    const result = spawnSync('promtool', ['check', 'rules', file], { encoding: 'utf8', timeout: 30_000 });
    if (result.error) {
      throw new Error(`promtool is needed (apt-get install prometheus): ${result.error.message}`);
    }
    const count = (rule.spec as unknown as RuleGroups).groups.flatMap((g) => g.rules).length;
    expect(result.status, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toContain(`SUCCESS: ${count} rules found`);
  });

  test('docs/operations.md lists exactly the alerts of the rules file', () => {
    const doc = readFileSync(join(process.cwd(), 'docs', 'operations.md'), 'utf8');
    const section = doc.slice(doc.indexOf('\n## Alert rules'), doc.indexOf('\n## Runbooks'));
    const documented = new Set([...section.matchAll(/^\| `(ImkitBridge\w+)`/gm)].map((m) => m[1]));
    const alerts = (rule.spec as unknown as RuleGroups).groups.flatMap((g) => g.rules.map((r) => r.alert));
    expect([...documented].sort()).toEqual([...alerts].sort());
  });

  test('every runbook annotation points at a section of docs/operations.md', () => {
    const doc = readFileSync(join(process.cwd(), 'docs', 'operations.md'), 'utf8');
    const anchors = new Set(
      [...doc.matchAll(/^#{2,3} (.+)$/gm)].map((m) =>
        m[1]!
          .toLowerCase()
          .replace(/[^\w\s-]/g, '')
          .replace(/\s+/g, '-'),
      ),
    );
    const rules = (rule.spec as unknown as RuleGroups).groups.flatMap((g) => g.rules);
    for (const r of rules) {
      const runbook = r.annotations?.runbook;
      if (runbook === undefined) continue;
      expect(runbook, r.alert).toMatch(/^docs\/operations\.md#/);
      expect(anchors, `${r.alert}: ${runbook}`).toContain(runbook.split('#')[1]);
    }
  });
});

describe('Grafana dashboard', () => {
  test('a ConfigMap labelled for the Grafana sidecar carries the chart dashboard file', () => {
    expect(() => validateManifest(dashboardMap)).not.toThrow();
    expect(dashboardMap.metadata).toMatchObject({
      namespace: 'monitoring',
      labels: { grafana_dashboard: '1' },
      annotations: { grafana_folder: 'Bridges' },
    });
    expect(dashboard).toEqual(JSON.parse(readFileSync(DASHBOARD_FILE, 'utf8')));
    expect(dashboard.uid).toBe('imkit-bridge');
  });

  test('every panel has a unique id and queries the selected data source with variables the dashboard defines', () => {
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const variables = new Set(dashboard.templating.list.map((v) => v.name));
    for (const panel of dashboard.panels.filter((p) => p.type !== 'row')) {
      expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
      expect(panel.datasource?.uid, panel.title).toBe('${datasource}');
      for (const target of panel.targets!) {
        for (const [, name] of target.expr.matchAll(/\$(?!__)(\w+)/g)) {
          expect(variables, `${panel.title}: $${name}`).toContain(name);
        }
      }
    }
  });

  test('the dashboard charts every series of the bridge', () => {
    const charted = new Set(dashboardExprs(dashboard).flatMap(({ expr }) => metricsIn(expr)));
    const bridgeFamilies = [...exposition.families]
      .filter(([name]) => !name.startsWith('imkit_bridge_process_'))
      .map(([name, type]) => (type === 'histogram' ? `${name}_bucket` : name));
    for (const name of bridgeFamilies) expect(charted, name).toContain(name);
  });
});

describe.each([
  ['alert rules', () => ruleExprs(rule.spec as unknown as RuleGroups)],
  ['dashboard', () => dashboardExprs(dashboard)],
])('the %s name what a running bridge exports', (_name, exprs) => {
  test('every metric exists in /metrics', () => {
    expect(exposition.series.size).toBeGreaterThan(20);
    for (const { where, expr } of exprs()) {
      const metrics = metricsIn(expr);
      expect(metrics.length, `${where} names a bridge metric`).toBeGreaterThan(0);
      for (const metric of metrics) expect(exposition.series, `${where}: ${metric}`).toContain(metric);
    }
  });

  test('every label selected or grouped by is one the series carry', () => {
    const everyLabel = new Set([...exposition.labels.values()].flatMap((labels) => [...labels]));
    for (const { where, expr } of exprs()) {
      for (const { metric, label } of labelsIn(expr)) {
        if (TARGET_LABELS.includes(label)) continue;
        const known = metric ? exposition.labels.get(metric) : undefined;
        expect(known ?? everyLabel, `${where}: ${metric ?? ''} label ${label}`).toContain(label);
      }
    }
  });
});

test('both are off by default', () => {
  const rendered = helm(['template', 'rel', CHART]);
  expect(rendered.status, rendered.stderr).toBe(0);
  const kinds = parseManifests(rendered.stdout).map((m) => `${m.kind}/${m.metadata.name}`);
  expect(kinds).not.toContain(`PrometheusRule/${FULLNAME}`);
  expect(kinds).not.toContain(`ConfigMap/${FULLNAME}-dashboard`);
});
