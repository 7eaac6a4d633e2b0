// The S3 store (any S3 API: AWS, MinIO, Ceph, ...), through @aws-sdk/client-s3 with the standard
// AWS credential chain (environment, profile, instance role). Objects live at
// `<prefix>sha256/<2>/<2>/<hex>` like the file store's files. Content whose hash is known up front
// is put straight to its key, large content as a multipart upload (@aws-sdk/lib-storage). Content
// that streams by is hashed on the way: small content is buffered and put once its hash is known;
// large content is uploaded to `<prefix>tmp/` and copied to its key at the end (the runbook's
// lifecycle rule expires what a crash leaves in tmp/). An object put again is written again (small)
// or copied onto itself (large, found by HEAD): either way its LastModified is renewed, so a
// lifecycle rule that expires objects by age never removes one a new entry just referred to.
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  CopyObjectCommand, DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { BlobNotFoundError, BlobStoreUnavailableError } from '../errors.ts';
import { objectPath, refOf, refOfPath } from './blob-ref.ts';
import type { BlobContent, BlobStat, BlobStore, PutResult } from './blob-store.ts';

export interface S3StoreOptions {
  bucket: string;
  /** '' or ending in '/'. */
  prefix: string;
  endpoint?: string | undefined;
  region?: string | undefined;
  forcePathStyle?: boolean;
  /** Only for tests; otherwise the AWS credential chain decides. */
  credentials?: S3ClientConfig['credentials'];
}

/** Above this, content goes up as a multipart upload (S3's parts are 5 MiB at least). */
const MULTIPART_BYTES = 8 * 1024 * 1024;
const PART_BYTES = 8 * 1024 * 1024;
/** Above this, a put first asks whether the object exists (cheaper than sending it again). */
const HEAD_FIRST_BYTES = 1024 * 1024;

const status = (err: unknown) => (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
const isMissing = (err: unknown) => status(err) === 404 || ['NotFound', 'NoSuchKey'].includes((err as Error).name);

export class S3BlobStore implements BlobStore {
  readonly kind = 's3' as const;
  readonly location: string;
  readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;

  constructor(options: S3StoreOptions) {
    this.bucket = options.bucket;
    this.prefix = options.prefix;
    this.location = `s3://${options.bucket}/${options.prefix}`;
    this.client = new S3Client({
      ...(options.region ? { region: options.region } : {}),
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
      forcePathStyle: options.forcePathStyle ?? false,
      ...(options.credentials ? { credentials: options.credentials } : {}),
      maxAttempts: 3,
      // A store that accepts connections and then says nothing must fail, not hang a batch.
      requestHandler: { connectionTimeout: 5_000, requestTimeout: 30_000 },
    });
  }

  keyOf(ref: string): string {
    return `${this.prefix}${objectPath(ref)}`;
  }

  /** Resolves the region from the options or the AWS chain; rejects when there is none. */
  async region(): Promise<string> {
    return this.client.config.region();
  }

  async put(content: Uint8Array): Promise<PutResult> {
    const sha256 = createHash('sha256').update(content).digest('hex');
    const ref = refOf(sha256);
    const size = content.byteLength;
    return this.guard('write', async () => {
      if (size >= HEAD_FIRST_BYTES && await this.exists(this.keyOf(ref))) {
        await this.refresh(this.keyOf(ref));
        return { ref, sha256, size, created: false };
      }
      if (size > MULTIPART_BYTES) await this.upload(this.keyOf(ref), content);
      else await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.keyOf(ref), Body: content, ContentLength: size }));
      return { ref, sha256, size, created: true };
    });
  }

  async putStream(content: BlobContent): Promise<PutResult> {
    const iterator = content[Symbol.asyncIterator]();
    const head: Uint8Array[] = [];
    let buffered = 0;
    let ended = false;
    while (buffered <= MULTIPART_BYTES) {
      const next = await iterator.next();
      if (next.done) { ended = true; break; }
      head.push(next.value);
      buffered += next.value.byteLength;
    }
    if (ended) return this.put(head.length === 1 ? head[0]! : Buffer.concat(head));

    const hash = createHash('sha256');
    let size = 0;
    async function* all(): AsyncGenerator<Uint8Array> {
      for (const chunk of head) { hash.update(chunk); size += chunk.byteLength; yield chunk; }
      head.length = 0;
      for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
        hash.update(next.value);
        size += next.value.byteLength;
        yield next.value;
      }
    }
    return this.guard('write', async () => {
      const tmpKey = `${this.prefix}tmp/put-${randomBytes(8).toString('hex')}`;
      try {
        await this.upload(tmpKey, Readable.from(all()));
        const sha256 = hash.digest('hex');
        const ref = refOf(sha256);
        const key = this.keyOf(ref);
        const created = !await this.exists(key);
        if (created) await this.client.send(new CopyObjectCommand({ Bucket: this.bucket, Key: key, CopySource: `${this.bucket}/${encodeURI(tmpKey)}` }));
        else await this.refresh(key);
        return { ref, sha256, size, created };
      } finally {
        await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: tmpKey })).catch(() => undefined);
      }
    });
  }

  async open(ref: string): Promise<Readable> {
    try {
      const reply = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.keyOf(ref) }));
      return reply.Body as Readable;
    } catch (err) {
      if (isMissing(err)) throw new BlobNotFoundError(ref, this.location);
      throw this.unavailable('read', err);
    }
  }

  async stat(ref: string): Promise<BlobStat | null> {
    try {
      const reply = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.keyOf(ref) }));
      return { ref, size: reply.ContentLength ?? 0, modifiedAt: reply.LastModified ?? new Date(0) };
    } catch (err) {
      if (isMissing(err)) return null;
      throw this.unavailable('stat', err);
    }
  }

  async presignGet(ref: string, expiresInSeconds: number): Promise<string> {
    const { getSignedUrl } = await import('@aws-sdk/s3-request-presigner');
    return getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.bucket, Key: this.keyOf(ref) }), { expiresIn: expiresInSeconds });
  }

  async *list(): AsyncIterable<BlobStat> {
    let token: string | undefined;
    do {
      const page = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: `${this.prefix}sha256/`, ContinuationToken: token }));
      for (const object of page.Contents ?? []) {
        const ref = refOfPath((object.Key ?? '').slice(this.prefix.length));
        if (ref) yield { ref, size: object.Size ?? 0, modifiedAt: object.LastModified ?? new Date(0) };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async delete(ref: string): Promise<boolean> {
    if (!await this.exists(this.keyOf(ref))) return false;
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.keyOf(ref) }));
    return true;
  }

  /** Each put is durable when it resolves (S3 acknowledges a write once it is stored). */
  async flush(): Promise<void> {}

  async probe(): Promise<void> {
    await this.put(new Uint8Array(0));
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  private async exists(key: string): Promise<boolean> {
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return true;
    } catch (err) {
      if (isMissing(err)) return false;
      throw err;
    }
  }

  /** Renews LastModified (a copy onto itself must replace the metadata to be allowed). */
  private async refresh(key: string): Promise<void> {
    await this.client.send(new CopyObjectCommand({ Bucket: this.bucket, Key: key, CopySource: `${this.bucket}/${encodeURI(key)}`, MetadataDirective: 'REPLACE' }));
  }

  private async upload(key: string, body: Uint8Array | Readable): Promise<void> {
    await new Upload({ client: this.client, params: { Bucket: this.bucket, Key: key, Body: body }, partSize: PART_BYTES, queueSize: 2 }).done();
  }

  private unavailable(what: string, err: unknown): BlobStoreUnavailableError {
    const code = status(err);
    return new BlobStoreUnavailableError(`blob store ${this.location}: ${what} failed: ${(err as Error).name}${code ? ` (HTTP ${code})` : ''}: ${(err as Error).message}`, { cause: err });
  }

  private async guard<T>(what: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (err) {
      if (err instanceof BlobStoreUnavailableError) throw err;
      throw this.unavailable(what, err);
    }
  }
}
