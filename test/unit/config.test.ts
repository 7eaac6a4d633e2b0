// Configuration errors through the real interface: the CLI exits 78 and names the setting.
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.ts';
import { ConfigError } from '../../src/core/errors.ts';
import { runCli } from '../helpers/cli.ts';

const oauthProducer = { IMAP_USER: 'user@example.com', OAUTH2_CLIENT_ID: 'id', OAUTH2_CLIENT_SECRET: 'client-secret-value' };

describe('configuration errors stop start-up with exit 78 and name the setting', () => {
  it('missing: IMAP_USER for the producer', async () => {
    const r = await runCli(['producer'], {});
    expect(r.code).toBe(78);
    expect(r.stderr).toContain('IMAP_USER');
    expect(r.stderr).toMatch(/required/);
  });

  it('missing: SINK_URL for the worker', async () => {
    const r = await runCli(['worker'], { IMAP_USER: 'user@example.com' });
    expect(r.code).toBe(78);
    expect(r.stderr).toContain('SINK_URL');
  });

  it('missing: IMAP_PASSWORD when IMAP_AUTH=password', async () => {
    const r = await runCli(['producer'], { IMAP_USER: 'u@example.com', IMAP_AUTH: 'password' });
    expect(r.code).toBe(78);
    expect(r.stderr).toContain('IMAP_PASSWORD');
  });

  it('malformed: a port that is not a number, a URL of the wrong kind, an unknown enum', async () => {
    for (const [name, value] of [['IMAP_PORT', 'nine-nine-three'], ['REDIS_URL', 'http://localhost:6379'], ['START_FROM', 'yesterday'], ['IMAP_SECURE', 'maybe']] as const) {
      const r = await runCli(['producer'], { ...oauthProducer, [name]: value });
      expect(r.code, name).toBe(78);
      expect(r.stderr, name).toContain(name);
    }
  });

  it('out of range: a port above 65535, MAX_ATTEMPTS of 0, RETRY_MAX_MS below RETRY_BASE_MS', async () => {
    const cases: Array<[string, Record<string, string>]> = [
      ['IMAP_PORT', { IMAP_PORT: '70000' }],
      ['MAX_ATTEMPTS', { MAX_ATTEMPTS: '0' }],
      ['RETRY_MAX_MS', { RETRY_BASE_MS: '5000', RETRY_MAX_MS: '10' }],
    ];
    for (const [name, env] of cases) {
      const r = await runCli(['worker'], { IMAP_USER: 'u@example.com', SINK_URL: 'file:///tmp/x.jsonl', ...env });
      expect(r.code, name).toBe(78);
      expect(r.stderr, name).toContain(name);
      expect(r.stderr).toMatch(/at (least|most)/);
    }
  });

  it('a file that cannot be read: IMAP_TLS_CA_FILE', async () => {
    const r = await runCli(['producer'], { ...oauthProducer, IMAP_TLS_CA_FILE: '/nonexistent/ca.pem' });
    expect(r.code).toBe(78);
    expect(r.stderr).toContain('IMAP_TLS_CA_FILE');
  });

  it('never echoes a secret value in the message', async () => {
    const r = await runCli(['producer'], { ...oauthProducer, REDIS_URL: 'redis://:hunter2-redis@localhost:notaport' });
    expect(r.code).toBe(78);
    expect(r.stderr).toContain('REDIS_URL');
    expect(r.stderr).not.toContain('hunter2');
  });

  it('reads --env-file, with the environment taking precedence', async () => {
    const { writeFileSync, mkdtempSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const file = join(mkdtempSync(join(tmpdir(), 'ms-env-')), 'test.env');
    writeFileSync(file, 'IMAP_USER=user@example.com\nOAUTH2_CLIENT_ID=id\nOAUTH2_CLIENT_SECRET=s3cret-value\nIMAP_PORT=bad\n');
    const fromFile = await runCli(['--env-file', file, 'producer'], {});
    expect(fromFile.code, fromFile.stderr).toBe(78);
    expect(fromFile.stderr).toContain('IMAP_PORT');
    const { mergedEnvironment } = await import('../../src/config/env-file.ts');
    expect(mergedEnvironment(file, { IMAP_PORT: '993' }).IMAP_PORT).toBe('993');
    expect(mergedEnvironment(file, {}).IMAP_PORT).toBe('bad');
    const missing = await runCli(['--env-file', '/nonexistent.env', 'producer'], {});
    expect(missing.code).toBe(78);
    expect(missing.stderr).toContain('--env-file');
  });
});

describe('loadConfig', () => {
  it('applies defaults and freezes the result', () => {
    const config = loadConfig('worker', { IMAP_USER: 'a@example.com', SINK_URL: 'file:///tmp/out.jsonl' });
    expect(config.redis.url).toBe('redis://127.0.0.1:6379');
    expect(config.prefix).toBe('mailstream');
    expect(config.http.port).toBe(9465);
    expect(config.worker.maxAttempts).toBe(5);
    expect(config.worker.dedupeTtlSeconds).toBe(7 * 24 * 3600);
    expect(Object.isFrozen(config.worker)).toBe(true);
    expect(() => { (config as { prefix: string }).prefix = 'x'; }).toThrow();
  });

  it('parses lists, booleans and START_FROM dates', () => {
    const config = loadConfig('producer', { ...oauthProducer, IMAP_MAILBOXES: 'INBOX, Sent ,', IMAP_SECURE: 'false', START_FROM: '2026-01-02' });
    expect(config.imap.mailboxes).toEqual(['INBOX', 'Sent']);
    expect(config.imap.secure).toBe(false);
    expect(config.producer.startFrom).toEqual({ kind: 'date', date: new Date('2026-01-02T00:00:00Z') });
    expect(config.oauth2.tokenFile).toBe('./tokens/user@example.com.json');
    expect(config.secrets).toContain('client-secret-value');
  });

  it('throws a ConfigError naming the setting', () => {
    expect(() => loadConfig('worker', { IMAP_USER: 'a@example.com', SINK_URL: 'ftp://x' })).toThrow(ConfigError);
    try {
      loadConfig('worker', { IMAP_USER: 'a@example.com', SINK_URL: 'ftp://x' });
    } catch (err) {
      expect((err as ConfigError).setting).toBe('SINK_URL');
    }
  });
});
