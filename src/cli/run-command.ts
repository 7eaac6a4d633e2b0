// What every command shares: reading the configuration for its role, a logger, and turning a
// thrown error into a message and the contract's exit code (0 ok, 1 failure, 2 usage, 78 config).
import type { Command } from 'commander';
import { mergedEnvironment } from '../config/env-file.ts';
import { loadConfig, type Config } from '../config/load.ts';
import type { Role } from '../config/settings.ts';
import { ConfigError, EXIT, exitCodeFor, MailstreamError } from '../core/errors.ts';
import { createLogger, scrub, type Logger } from '../core/logger.ts';

export interface CommandContext {
  config: Readonly<Config>;
  logger: Logger;
  env: Record<string, string | undefined>;
}

/** Global options live on the root command; find them from any subcommand. */
function rootOptions(command: Command): { envFile?: string } {
  let root = command;
  while (root.parent) root = root.parent;
  return root.opts<{ envFile?: string }>();
}

export function commandContext(command: Command, role: Role, overrides: Record<string, string> = {}): CommandContext {
  const env = { ...mergedEnvironment(rootOptions(command).envFile), ...overrides };
  const config = loadConfig(role, env);
  const logger = createLogger({ level: config.logLevel, secrets: config.secrets, base: { role } });
  return { config, logger, env };
}

/** Raised inside an action to end the process with a given code and no stack trace. */
export class ExitRequest extends Error {
  readonly exitCode: number;
  constructor(exitCode: number, message = '') {
    super(message);
    this.exitCode = exitCode;
  }
}

/** Wraps an action so that any error becomes a one-line message on stderr and an exit code. */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<void> | void): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (err) {
      process.exitCode = reportError(err);
    }
  };
}

export function reportError(err: unknown, secrets: readonly string[] = []): number {
  if (err instanceof ExitRequest) {
    if (err.message) process.stderr.write(`${err.message}\n`);
    return err.exitCode;
  }
  const code = exitCodeFor(err);
  const message = err instanceof ConfigError
    ? `mailstream: configuration error: ${err.message}`
    : err instanceof MailstreamError
      ? `mailstream: ${err.message}`
      : `mailstream: ${(err as Error)?.stack ?? String(err)}`;
  process.stderr.write(`${scrub(message, secrets)}\n`);
  return code === EXIT.ok ? EXIT.failure : code;
}
