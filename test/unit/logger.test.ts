import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, scrub, withCorrelation } from '../../src/core/logger.ts';

function capture() {
  const lines: string[] = [];
  const destination = new Writable({ write(chunk, _enc, cb) { lines.push(String(chunk)); cb(); } });
  return { lines, destination: destination as unknown as { write(s: string): void } };
}

describe('logger', () => {
  it('keeps every secret handed to it out of the output', () => {
    const { lines, destination } = capture();
    const logger = createLogger({ level: 'info', secrets: ['client-secret-XYZ', 'imap-pass-123'], destination });
    logger.info({
      accessToken: 'ya29.ACCESS-TOKEN-VALUE',
      refresh_token: '1//REFRESH-TOKEN-VALUE',
      config: { password: 'imap-pass-123', clientSecret: 'client-secret-XYZ' },
      req: { headers: { authorization: 'Bearer ya29.HEADER-TOKEN' } },
      redisUrl: 'redis://default:redis-pass-456@cache.internal:6379/0',
    }, 'connecting with secret client-secret-XYZ');
    logger.error({ err: new Error('login failed for password imap-pass-123 at rediss://u:p4ss-in-url@host') }, 'failure');
    const out = lines.join('');
    for (const secret of ['ACCESS-TOKEN-VALUE', 'REFRESH-TOKEN-VALUE', 'imap-pass-123', 'client-secret-XYZ', 'HEADER-TOKEN', 'redis-pass-456', 'p4ss-in-url']) {
      expect(out, secret).not.toContain(secret);
    }
    expect(out).toContain('[REDACTED]');
    const first = JSON.parse(lines[0]!);
    expect(first.msg).toBe('connecting with secret [REDACTED]');
    expect(first.redisUrl).toBe('redis://default:[REDACTED]@cache.internal:6379/0');
  });

  it('writes JSON with level names and carries the correlation id of the async context', async () => {
    const { lines, destination } = capture();
    const logger = createLogger({ level: 'debug', destination }).child({ component: 'test' });
    await withCorrelation(async () => {
      await new Promise((r) => setTimeout(r, 1));
      logger.debug('inside');
    }, 'batch-42');
    logger.info('outside');
    const [inside, outside] = lines.map((l) => JSON.parse(l));
    expect(inside).toMatchObject({ level: 'debug', component: 'test', correlationId: 'batch-42', msg: 'inside' });
    expect(outside.correlationId).toBeUndefined();
  });

  it('scrubs JSON-escaped secrets too', () => {
    expect(scrub(JSON.stringify({ m: 'pa"ss\\word' }), ['pa"ss\\word'])).not.toContain('ss');
  });
});
