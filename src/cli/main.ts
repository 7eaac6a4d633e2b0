// `mailstream <command>`: the operator's entry point. Each command lives in its own module and
// registers itself here; this file only assembles them and maps errors to exit codes.
import { Command, CommanderError } from 'commander';
import { EXIT } from '../core/errors.ts';
import { registerAuth } from './auth.ts';
import { registerBackup, registerRestore } from './backup.ts';
import { registerBlob } from './blob.ts';
import { registerDemo } from './demo.ts';
import { registerDlq } from './dlq.ts';
import { registerLoadtest } from './loadtest.ts';
import { registerMailbox } from './mailbox.ts';
import { registerProducer } from './producer.ts';
import { reportError } from './run-command.ts';
import { registerStatus } from './status.ts';
import { registerWorker } from './worker.ts';

export const VERSION = '0.1.0';

export function buildProgram(): Command {
  const program = new Command('mailstream')
    .description('Email ingestion: IMAP/Gmail mailboxes -> Redis stream -> workers -> your sink')
    .version(VERSION)
    .option('--env-file <file>', 'read settings from this file (the environment still wins); default .env if present')
    .showHelpAfterError()
    .exitOverride();
  for (const register of [
    registerProducer, registerWorker, registerAuth, registerStatus, registerDlq, registerMailbox,
    registerBackup, registerRestore, registerBlob, registerDemo, registerLoadtest,
  ]) {
    register(program);
  }
  // Subcommands inherit exitOverride only when set on each; make usage errors exit 2 everywhere.
  const override = (cmd: Command) => { cmd.exitOverride(); cmd.commands.forEach(override); };
  override(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      const done = err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help';
      process.exitCode = done ? EXIT.ok : EXIT.usage;
      return;
    }
    process.exitCode = reportError(err);
  }
}
