// BLOB_STORE_URL and its companions as the configuration reads them.
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.ts';
import { ConfigError } from '../../src/core/errors.ts';

const base = { IMAP_USER: 'a@example.com', IMAP_AUTH: 'password', IMAP_PASSWORD: 'pw' };
const blobs = (env: Record<string, string>) => loadConfig('producer', { ...base, ...env }).blobs;

describe('blob store settings', () => {
  it('default to none: entries as before', () => {
    expect(blobs({})).toEqual({ store: { kind: 'none' }, inlineBodyBytes: 4096 });
  });

  it('read a file store with fsync on unless turned off', () => {
    expect(blobs({ BLOB_STORE_URL: 'file:///var/lib/mailstream/blobs/' }).store).toEqual({ kind: 'file', dir: '/var/lib/mailstream/blobs', fsync: true });
    expect(blobs({ BLOB_STORE_URL: 'file:///srv/blobs', BLOB_FSYNC: 'false' }).store).toMatchObject({ fsync: false });
  });

  it('read an S3 store: bucket, prefix ending in /, endpoint, region, path style', () => {
    expect(blobs({ BLOB_STORE_URL: 's3://mail-archive/prod/blobs', S3_ENDPOINT: 'http://127.0.0.1:9000', S3_REGION: 'eu-west-1', S3_FORCE_PATH_STYLE: 'true' }).store)
      .toEqual({ kind: 's3', bucket: 'mail-archive', prefix: 'prod/blobs/', endpoint: 'http://127.0.0.1:9000', region: 'eu-west-1', forcePathStyle: true });
    expect(blobs({ BLOB_STORE_URL: 's3://mail-archive' }).store).toMatchObject({ bucket: 'mail-archive', prefix: '', region: undefined, forcePathStyle: false });
  });

  it('refuse what is not a store, naming the setting', () => {
    for (const url of ['file://relative/dir', 'file:///', 's3://', 'https://bucket.s3.amazonaws.com', 'nothing']) {
      expect(() => blobs({ BLOB_STORE_URL: url }), url).toThrow(ConfigError);
      expect(() => blobs({ BLOB_STORE_URL: url }), url).toThrow(/BLOB_STORE_URL/);
    }
    expect(() => blobs({ INLINE_BODY_BYTES: '10' })).toThrow(/INLINE_BODY_BYTES: must be at least 256/);
  });

  it('read the Redis memory watermark as a share', () => {
    expect(loadConfig('producer', base).producer.redisMemoryHighWatermark).toBe(0.8);
    expect(loadConfig('producer', { ...base, REDIS_MEMORY_HIGH_WATERMARK: '0.95' }).producer.redisMemoryHighWatermark).toBe(0.95);
    expect(loadConfig('producer', { ...base, REDIS_MEMORY_HIGH_WATERMARK: '1' }).producer.redisMemoryHighWatermark).toBe(1);
    for (const bad of ['0', '80%', '1.5', '-0.2']) expect(() => loadConfig('producer', { ...base, REDIS_MEMORY_HIGH_WATERMARK: bad }), bad).toThrow(/REDIS_MEMORY_HIGH_WATERMARK/);
  });
});
