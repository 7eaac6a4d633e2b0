// The operator's commands of the contract are all there, each with --help.
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.ts';

const CONTRACT = [
  ['producer'], ['worker'], ['auth', 'setup'], ['auth', 'info'], ['auth', 'refresh'], ['auth', 'revoke'],
  ['status'], ['dlq', 'list'], ['dlq', 'show'], ['dlq', 'replay'], ['dlq', 'purge'], ['mailbox', 'reset'],
  ['backup'], ['restore'], ['demo'], ['loadtest'],
];

describe('mailstream CLI', () => {
  it('lists every command of the contract in --help', async () => {
    const r = await runCli(['--help']);
    expect(r.code).toBe(0);
    for (const top of new Set(CONTRACT.map((c) => c[0]!))) expect(r.stdout).toMatch(new RegExp(`^  ${top}\\b`, 'm'));
  });

  it('answers --help for each command with exit 0', async () => {
    for (const command of CONTRACT) {
      const r = await runCli([...command, '--help']);
      expect(r.code, command.join(' ')).toBe(0);
      expect(r.stdout, command.join(' ')).toContain(`Usage: mailstream ${command.join(' ')}`);
    }
  });

  it('exits 2 on a usage error', async () => {
    expect((await runCli(['no-such-command'])).code).toBe(2);
    expect((await runCli(['dlq', 'show'])).code).toBe(2);
    expect((await runCli(['status', '--no-such-flag'])).code).toBe(2);
  });
});
