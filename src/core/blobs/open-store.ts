// The store BLOB_STORE_URL names, or null for `none`. The S3 client is loaded only for an S3 store,
// so the file store and `none` do not pay for the SDK at start-up.
import type { BlobStoreConfig } from '../../config/load.ts';
import { ConfigError } from '../errors.ts';
import type { BlobStore } from './blob-store.ts';
import { FileBlobStore } from './file-store.ts';

export async function openBlobStore(config: BlobStoreConfig): Promise<BlobStore | null> {
  switch (config.kind) {
    case 'none':
      return null;
    case 'file':
      return new FileBlobStore({ dir: config.dir, fsync: config.fsync });
    case 's3': {
      const { S3BlobStore } = await import('./s3-store.ts');
      const store = new S3BlobStore(config);
      // Without a region every request would fail later, one by one; say so now.
      await store.region().catch(async () => {
        await store.close();
        throw new ConfigError('S3_REGION', 'required for an s3:// BLOB_STORE_URL (or AWS_REGION, or a region in the AWS profile)');
      });
      return store;
    }
  }
}
