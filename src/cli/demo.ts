import type { Command } from 'commander';
import { NotImplementedError } from '../core/errors.ts';
import { action } from './run-command.ts';

export function registerDemo(program: Command): void {
  program.command('demo').description('private Redis + Dovecot seeded with sample mail, producer + worker into a JSONL file')
    .action(action(() => { throw new NotImplementedError('demo'); }));
}
