// The dashboard and the alert rules only name metrics the code exports: every PromQL expression
// is parsed (by promtool, as a recording rule) and each metric it selects must be in a live
// createMetrics() registry. Renaming a metric without updating them fails here.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createMetrics } from '../../src/core/metrics.ts';
import { ROOT } from '../helpers/cli.ts';

interface Panel { type: string; title: string; datasource?: { uid?: string }; targets?: { expr: string; datasource?: { uid?: string } }[]; panels?: Panel[] }
interface Dashboard { panels: Panel[]; templating: { list: { name: string; type: string; query: string }[] } }

const dashboard = JSON.parse(readFileSync(join(ROOT, 'grafana/mailstream.json'), 'utf8')) as Dashboard;
const alertsText = readFileSync(join(ROOT, 'config/prometheus/alerts.yml'), 'utf8');

function dashboardExpressions(): { panel: string; expr: string }[] {
  const all = (panels: Panel[]): Panel[] => panels.flatMap((p) => [p, ...all(p.panels ?? [])]);
  return all(dashboard.panels).flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })));
}

/** `expr:` values of alerts.yml, single-line or `|` blocks. */
function alertExpressions(): { alert: string; expr: string }[] {
  const out: { alert: string; expr: string }[] = [];
  const lines = alertsText.split('\n');
  let alert = '';
  for (let i = 0; i < lines.length; i++) {
    const name = /^\s*- alert:\s*(\S+)/.exec(lines[i]!);
    if (name) alert = name[1]!;
    const expr = /^(\s*)expr:\s*(.*)$/.exec(lines[i]!);
    if (!expr) continue;
    if (expr[2] !== '|') { out.push({ alert, expr: expr[2]! }); continue; }
    const block: string[] = [];
    while (i + 1 < lines.length && (lines[i + 1]!.trim() === '' || lines[i + 1]!.search(/\S/) > expr[1]!.length)) block.push(lines[++i]!.trim());
    out.push({ alert, expr: block.join(' ').trim() });
  }
  return out;
}

/** Grafana's own variables, replaced as Grafana would before the query reaches Prometheus. */
function asPromql(expr: string): string {
  return expr.replaceAll('$__rate_interval', '5m').replaceAll('$__interval', '1m').replaceAll('$__range', '1h');
}

const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'inf', 'nan']);

/** Metric names selected by a PromQL expression (identifiers that are not functions, labels or keywords). */
export function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""') // string literals
    .replace(/\{[^}]*\}/g, '') // label matchers
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '') // label lists
    .replace(/\[[^\]]*\]/g, ''); // ranges and subqueries
  const names = new Set<string>();
  for (const match of stripped.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const name = match[0];
    const after = stripped.slice(match.index + name.length).trimStart();
    if (after.startsWith('(') || KEYWORDS.has(name.toLowerCase())) continue;
    if (/^\d/.test(stripped.slice(Math.max(0, match.index - 1), match.index))) continue; // 5m, 1e3
    names.add(name);
  }
  return [...names];
}

async function exportedNames(): Promise<Set<string>> {
  const names = new Set<string>(['up']);
  for (const role of ['producer', 'worker'] as const) {
    const metrics = createMetrics(role);
    for (const metric of await metrics.registry.getMetricsAsJSON()) {
      names.add(metric.name);
      if (String(metric.type) === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(`${metric.name}${suffix}`);
      if (String(metric.type) === 'summary') for (const suffix of ['_sum', '_count']) names.add(`${metric.name}${suffix}`);
    }
  }
  return names;
}

describe('dashboard and alert rules against the exported metrics', () => {
  it('finds the metric names in PromQL the way Prometheus reads them', () => {
    expect(metricNames('histogram_quantile(0.99, sum by (le) (rate(mailstream_delivery_duration_seconds_bucket{job="x"}[5m])))'))
      .toEqual(['mailstream_delivery_duration_seconds_bucket']);
    expect(metricNames('time() - max by (mailbox) (a_b) > 900 and on (x) c{d="and e"} unless vector(0)').sort()).toEqual(['a_b', 'c']);
  });

  it('every dashboard and alert expression parses (promtool) and names only exported metrics', async () => {
    const expressions = [
      ...dashboardExpressions().map((e) => ({ where: `dashboard panel "${e.panel}"`, expr: asPromql(e.expr) })),
      ...alertExpressions().map((e) => ({ where: `alert ${e.alert}`, expr: e.expr })),
    ];
    expect(expressions.length).toBeGreaterThan(40);
    const dir = mkdtempSync(join(tmpdir(), 'ms-promql-'));
    try {
      const rules = expressions.map((e, i) => `      - record: mailstream:check_${i}\n        expr: ${JSON.stringify(e.expr)}`).join('\n');
      writeFileSync(join(dir, 'rules.yml'), `groups:\n  - name: dashboard\n    rules:\n${rules}\n`);
      execFileSync('promtool', ['check', 'rules', join(dir, 'rules.yml')], { stdio: 'pipe' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const exported = await exportedNames();
    const unknown = expressions.flatMap((e) => metricNames(e.expr).filter((n) => !exported.has(n)).map((n) => `${n} in ${e.where}`));
    expect(unknown).toEqual([]);
    const used = new Set(expressions.flatMap((e) => metricNames(e.expr)));
    // The list: throughput, latency, lag, pending, DLQ, errors, breakers, freshness, up.
    for (const name of [
      'mailstream_emails_fetched_total', 'mailstream_emails_appended_total', 'mailstream_emails_delivered_total',
      'mailstream_delivery_failures_total', 'mailstream_emails_retried_total', 'mailstream_emails_deduplicated_total',
      'mailstream_emails_dead_lettered_total', 'mailstream_delivery_duration_seconds_bucket', 'mailstream_imap_fetch_duration_seconds_bucket',
      'mailstream_stream_length', 'mailstream_consumer_group_lag', 'mailstream_consumer_group_pending', 'mailstream_dlq_length',
      'mailstream_circuit_breaker_state', 'mailstream_mailbox_last_poll_timestamp_seconds', 'mailstream_uidvalidity_changes_total',
      'mailstream_oauth_token_refreshes_total', 'mailstream_imap_last_response_timestamp_seconds', 'mailstream_ready', 'up',
    ]) expect(used, name).toContain(name);
  });

  it('the dashboard takes its data source from a variable', () => {
    expect(dashboard.templating.list).toContainEqual(expect.objectContaining({ name: 'datasource', type: 'datasource', query: 'prometheus' }));
    const all = (panels: Panel[]): Panel[] => panels.flatMap((p) => [p, ...all(p.panels ?? [])]);
    for (const panel of all(dashboard.panels).filter((p) => p.type !== 'row')) {
      expect(panel.datasource?.uid, panel.title).toBe('${datasource}');
      for (const target of panel.targets ?? []) expect(target.datasource?.uid, panel.title).toBe('${datasource}');
    }
  });

  it('every alert points to a runbook section that exists', () => {
    const runbooks = [...alertsText.matchAll(/runbook:\s*(\S+)/g)].map((m) => m[1]!);
    expect(runbooks.length).toBe(alertExpressions().length);
    for (const link of runbooks) {
      const [file, anchor] = link.split('#');
      const text = readFileSync(join(ROOT, file!), 'utf8');
      if (!anchor) continue;
      const anchors = [...text.matchAll(/^#+\s+(.+)$/gm)].map((m) => m[1]!.trim().toLowerCase().replace(/[^a-z0-9 -]/g, '').replace(/ /g, '-'));
      expect(anchors, link).toContain(anchor);
    }
  });
});
