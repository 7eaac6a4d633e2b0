import type { Command } from 'commander';
import { NotImplementedError } from '../core/errors.ts';
import { action, commandContext } from './run-command.ts';

export function registerWorker(program: Command): void {
  program.command('worker')
    .description('run one worker daemon: Redis stream -> sink (SINK_URL), until SIGTERM/SIGINT')
    .action(action(async (_opts: object, command: Command) => {
      commandContext(command, 'worker');
      throw new NotImplementedError('worker');
    }));
}
