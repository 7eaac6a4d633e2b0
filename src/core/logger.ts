// JSON logs with pino. Secrets are kept out twice over: by path (fields that hold credentials
// wherever they sit) and by value (every secret setting, and any URL's user:password part, is
// scrubbed from the finished line), so a token that slips into an error message still never
// reaches the log.
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import pino, { type DestinationStream, type Logger } from 'pino';

export type { Logger } from 'pino';

/** Field names that hold credentials, at the top level and one or two levels down. */
const SECRET_FIELDS = [
  'password', 'pass', 'secret', 'token', 'accessToken', 'access_token', 'refreshToken', 'refresh_token',
  'id_token', 'clientSecret', 'client_secret', 'authorization', 'Authorization', 'cookie', 'private_key',
  'webhookSecret',
];
export const REDACT_PATHS = [
  ...SECRET_FIELDS,
  ...SECRET_FIELDS.map((f) => `*.${f}`),
  ...SECRET_FIELDS.map((f) => `*.*.${f}`),
  'headers.authorization', 'req.headers.authorization', 'req.headers.cookie',
];

const URL_CREDENTIALS = /([a-z][a-z0-9+.-]*:\/\/)([^\s/@:"]*):([^\s/@"]*)@/gi;

export function scrub(line: string, secrets: readonly string[]): string {
  let out = line.replace(URL_CREDENTIALS, '$1$2:[REDACTED]@');
  for (const secret of secrets) {
    if (out.includes(secret)) out = out.split(secret).join('[REDACTED]');
    // A secret also shows up JSON-escaped inside the line (quotes, backslashes).
    const escaped = JSON.stringify(secret).slice(1, -1);
    if (escaped !== secret && out.includes(escaped)) out = out.split(escaped).join('[REDACTED]');
  }
  return out;
}

interface Correlation { correlationId: string }
const correlation = new AsyncLocalStorage<Correlation>();

/** Runs `fn` with a correlation id that every log line written inside it carries. */
export function withCorrelation<T>(fn: () => T, correlationId: string = randomUUID()): T {
  return correlation.run({ correlationId }, fn);
}

export function currentCorrelationId(): string | undefined {
  return correlation.getStore()?.correlationId;
}

export interface LoggerOptions {
  level: string;
  /** Values to scrub from every line (see Config.secrets). */
  secrets?: readonly string[];
  /** Where lines go; stdout by default. */
  destination?: DestinationStream;
  base?: Record<string, unknown>;
}

export function createLogger(options: LoggerOptions): Logger {
  const target = options.destination ?? pino.destination({ fd: 1, sync: true });
  const secrets = [...(options.secrets ?? [])].filter((s) => s.length > 0);
  const scrubbing: DestinationStream = {
    write(line: string) { target.write(scrub(line, secrets)); },
  };
  // Flushing matters at exit: pass through to the real destination when it can.
  const flushable = target as DestinationStream & { flushSync?: () => void };
  if (typeof flushable.flushSync === 'function') {
    (scrubbing as { flushSync?: () => void }).flushSync = () => flushable.flushSync?.();
  }
  return pino({
    level: options.level,
    base: { pid: process.pid, ...options.base },
    redact: { paths: REDACT_PATHS, censor: '[REDACTED]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    mixin: () => {
      const id = currentCorrelationId();
      return id ? { correlationId: id } : {};
    },
  }, scrubbing);
}

/** Flushes buffered lines; call before process.exit. */
export function flushLogger(logger: Logger): void {
  try { (logger as unknown as { flush?: () => void }).flush?.(); } catch { /* nothing left to do at exit */ }
}
