// Reads KEY=VALUE files (`--env-file FILE`, or `.env` in the working directory) with Node's own
// parser, so quoting and comments follow the same rules as `node --env-file`.
import { existsSync, readFileSync } from 'node:fs';
import { parseEnv } from 'node:util';
import { ConfigError } from '../core/errors.ts';

export function readEnvFile(path: string, { required }: { required: boolean }): Record<string, string> {
  if (!existsSync(path)) {
    if (required) throw new ConfigError('--env-file', `cannot read ${path}: no such file`);
    return {};
  }
  try {
    return parseEnv(readFileSync(path, 'utf8')) as Record<string, string>;
  } catch (err) {
    throw new ConfigError('--env-file', `cannot read ${path}: ${(err as Error).message}`);
  }
}

/** The environment the config sees: the file's values, overridden by the real environment. */
export function mergedEnvironment(envFile: string | undefined, env: NodeJS.ProcessEnv = process.env): Record<string, string | undefined> {
  const fromFile = envFile ? readEnvFile(envFile, { required: true }) : readEnvFile('.env', { required: false });
  return { ...fromFile, ...env };
}
