// The Prometheus files as promtool sees them: the scrape config and alert rules are valid, and
// the rule unit tests (config/prometheus/alerts.test.yml) fire every alert on synthetic series.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/cli.ts';

const DIR = join(ROOT, 'config/prometheus');

function promtool(...args: string[]) {
  const result = spawnSync('promtool', args, { cwd: DIR, encoding: 'utf8' });
  return { code: result.status, output: `${result.stdout}${result.stderr}` };
}

describe('config/prometheus with promtool', () => {
  it('promtool check config accepts the scrape config (and the rule file it loads)', () => {
    const result = promtool('check', 'config', 'prometheus.yml');
    expect(result.output).toContain('SUCCESS');
    expect(result.code).toBe(0);
  });

  it('promtool check rules accepts the alert rules', () => {
    const result = promtool('check', 'rules', 'alerts.yml');
    expect(result.code, result.output).toBe(0);
  });

  it('promtool test rules: every alert has a unit test that fires it, and they pass', () => {
    const alerts = [...readFileSync(join(DIR, 'alerts.yml'), 'utf8').matchAll(/^\s*- alert:\s*(\S+)/gm)].map((m) => m[1]!);
    const tests = readFileSync(join(DIR, 'alerts.test.yml'), 'utf8');
    for (const alert of alerts) {
      // An alertname followed by a non-empty exp_alerts list: the test expects it to fire.
      expect(tests, alert).toMatch(new RegExp(`alertname: ${alert}\\n\\s+exp_alerts:\\n\\s+- exp_labels`));
    }
    const result = promtool('test', 'rules', 'alerts.test.yml');
    expect(result.code, result.output).toBe(0);
    expect(result.output).toContain('SUCCESS');
  });
});
