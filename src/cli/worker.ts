import type { Command } from 'commander';
import { action, commandContext } from './run-command.ts';

export function registerWorker(program: Command): void {
  program.command('worker')
    .description('run one worker daemon: Redis stream -> sink (SINK_URL), until SIGTERM/SIGINT')
    .action(action(async (_opts: object, command: Command) => {
      const { config, logger } = commandContext(command, 'worker');
      const [{ runDaemon }, { startWorker }, { createSink }] = await Promise.all([
        import('../core/daemon.ts'), import('../worker/worker.ts'), import('../worker/sinks/index.ts'),
      ]);
      // A sink that cannot be set up (a module that does not load, an S3 store without a region)
      // stops start-up before any connection opens. With a blob store the sink owns it (and closes it).
      const sink = await createSink(config, { concurrency: config.worker.concurrency });
      await runDaemon({ role: 'worker', config, logger, handleSignals: true, start: (ctx) => startWorker(ctx, { sink }) });
    }));
}
