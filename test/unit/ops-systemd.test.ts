// The systemd units as systemd reads them: `systemd-analyze verify` accepts them without a
// warning, `systemd-analyze security` scores them 2.0 or lower, and every exposure left is
// explained in a comment of the unit.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DAEMON_NODE_FLAGS } from '../../src/ops/local/stack.ts';
import { ROOT } from '../helpers/cli.ts';

const UNITS = [
  { file: 'mailstream-producer.service', as: 'mailstream-producer.service' },
  { file: 'mailstream-worker@.service', as: 'mailstream-worker@9465.service' },
];
const dir = mkdtempSync(join(tmpdir(), 'ms-systemd-'));

afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The unit as installed here: this checkout instead of /opt/mailstream, this Node as /usr/bin/node. */
function render(file: string, as: string): string {
  const text = readFileSync(join(ROOT, 'config/systemd', file), 'utf8')
    .replaceAll('/usr/bin/node', process.execPath)
    .replaceAll('/opt/mailstream/', ROOT.endsWith('/') ? ROOT : `${ROOT}/`);
  const path = join(dir, as);
  writeFileSync(path, text);
  return path;
}

function run(args: string[]) {
  const result = spawnSync('systemd-analyze', args, { encoding: 'utf8' });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe.each(UNITS)('$file', ({ file, as }) => {
  const text = readFileSync(join(ROOT, 'config/systemd', file), 'utf8');

  it('systemd-analyze verify accepts it with no warning, and catches a broken copy', () => {
    const result = run(['verify', render(file, as)]);
    expect(result.stderr + result.stdout).toBe('');
    expect(result.code).toBe(0);
    const broken = join(dir, `broken-${as}`);
    writeFileSync(broken, text.replace('KillSignal=SIGTERM', 'KillSignal=SIGNOTHING'));
    expect(run(['verify', broken]).stderr).toMatch(/signal/i);
  });

  it('has the restart policy, graceful stop, settings file, own user and the hardening asked for', () => {
    for (const line of [
      'Restart=on-failure', 'KillSignal=SIGTERM', 'RestartPreventExitStatus=78', 'User=mailstream', 'NoNewPrivileges=yes',
      'ProtectSystem=strict', 'ProtectHome=yes', 'PrivateTmp=yes', 'StateDirectory=mailstream', 'CapabilityBoundingSet=',
      'SystemCallFilter=@system-service', 'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX', 'UMask=0077',
    ]) expect(text.split('\n'), line).toContain(line);
    expect(text).toMatch(/^TimeoutStopSec=\d+s$/m);
    expect(text).toMatch(/^EnvironmentFile=\/etc\/mailstream\/\w+\.env$/m);
    // The heap flags the local stack and the bench run the daemons with (src/ops/local/stack.ts).
    const execStart = `ExecStart=/usr/bin/node ${DAEMON_NODE_FLAGS.join(' ')} /opt/mailstream/bin/mailstream.js `;
    expect(text).toMatch(new RegExp(`^${execStart.replace(/[./]/g, '\\$&')}(producer|worker)$`, 'm'));
    expect(text).not.toMatch(/^MemoryDenyWriteExecute=yes/m);
    if (file.includes('producer')) expect(text).toMatch(/^ReadWritePaths=.*tokens$/m);
  });

  it('systemd-analyze security --offline scores 2.0 or lower, with each relaxation explained', () => {
    const result = run(['security', '--offline=true', render(file, as)]);
    const score = /Overall exposure level for \S+: (\d+\.\d+)/.exec(result.stdout);
    expect(score, result.stdout + result.stderr).not.toBeNull();
    expect(Number(score![1])).toBeLessThanOrEqual(2.0);
    const comments = text.split('\n').filter((l) => l.startsWith('#')).join('\n');
    const open = [...result.stdout.matchAll(/^✗ (\S+)/gm)].map((m) => m[1]!);
    expect(open.length).toBeGreaterThan(0);
    for (const name of open) {
      // `SystemCallFilter=~@resources` -> @resources, `RestrictAddressFamilies=~AF_(INET|INET6)` -> AF_INET,
      // `PrivateNetwork=` -> PrivateNetwork
      const keyword = name.includes('=~') ? name.split('=~')[1]!.replace('(', '').split('|')[0]! : name.split('=')[0]!;
      expect(comments, `no comment explains ${name}`).toContain(keyword);
    }
  });
});

it('scripts/start.sh starts the daemons with the same Node heap flags as the units', () => {
  expect(readFileSync(join(ROOT, 'scripts/start.sh'), 'utf8')).toContain(`"$NODE" ${DAEMON_NODE_FLAGS.join(' ')} -- `);
});
