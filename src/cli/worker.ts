import type { Command } from 'commander';
import { action, commandContext } from './run-command.ts';

export function registerWorker(program: Command): void {
  program.command('worker')
    .description('run one worker daemon: Redis stream -> sink (SINK_URL), until SIGTERM/SIGINT')
    .action(action(async (_opts: object, command: Command) => {
      const { config, logger } = commandContext(command, 'worker');
      const [{ runDaemon }, { startWorker }] = await Promise.all([import('../core/daemon.ts'), import('../worker/worker.ts')]);
      await runDaemon({ role: 'worker', config, logger, handleSignals: true, start: (ctx) => startWorker(ctx) });
    }));
}
