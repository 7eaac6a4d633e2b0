// What a webhook receiver gets to fetch an email's blobs with (WEBHOOK_ATTACHMENTS). The entry
// names them by ref only, which a receiver without access to the store cannot use:
// - `urls`: with an S3 store, a presigned GET URL beside every ref (`raw.url`,
//   `attachments[i].url`, `textUrl`, `htmlUrl`), valid BLOB_URL_TTL_S, and `urlsExpireAt`;
//   a file store cannot sign URLs, so its refs go alone;
// - `inline`: attachments' content in the JSON (`attachments[i].contentBase64`) while their
//   decoded sizes add up to at most WEBHOOK_INLINE_MAX_BYTES per email, the rest as with `urls`;
// - `refs`: the entry as it is.
// Presigning is local (a signature, no request), so `urls` costs no round trip to the store.
import type { BlobStore } from '../../core/blobs/blob-store.ts';
import type { AttachmentMeta, EmailEntry } from '../../core/entry.ts';
import { BlobStoreUnavailableError } from '../../core/errors.ts';
import type { EmailRewrite } from './blob-bodies.ts';
import { readWhole } from './blob-reads.ts';

export type WebhookAttachmentsMode = 'urls' | 'refs' | 'inline';

export interface WebhookAttachmentOptions {
  mode: WebhookAttachmentsMode;
  /** `inline`: decoded bytes of attachments put into one email's JSON at most. */
  inlineMaxBytes: number;
  urlTtlSeconds: number;
}

/** An attachment as the webhook sends it. */
export interface WebhookAttachment extends AttachmentMeta {
  /** A presigned GET URL of `ref` (S3 store). */
  url?: string;
  /** The decoded content, base64 (WEBHOOK_ATTACHMENTS=inline). */
  contentBase64?: string;
}

/** The email as the webhook sends it: the entry plus what this module adds. */
export interface WebhookEmail extends Omit<EmailEntry, 'attachments' | 'raw'> {
  attachments: WebhookAttachment[];
  raw?: EmailEntry['raw'] & { url?: string };
  textUrl?: string;
  htmlUrl?: string;
  /** When the URLs of this payload stop working (ISO 8601). */
  urlsExpireAt?: string;
}

/** The rewrite for WEBHOOK_ATTACHMENTS, or undefined when it changes nothing with this store. */
export function webhookAttachments(store: BlobStore | null, options: WebhookAttachmentOptions): EmailRewrite | undefined {
  const signs = typeof store?.presignGet === 'function';
  if (!store || options.mode === 'refs' || (options.mode === 'urls' && !signs)) return undefined;
  const ttl = options.urlTtlSeconds;

  async function urlOf(ref: string): Promise<string> {
    try {
      return await store!.presignGet!(ref, ttl);
    } catch (err) {
      // Signing fails only without credentials to sign with (an expired role session): the store's side.
      throw new BlobStoreUnavailableError(`blob store ${store!.location}: cannot presign ${ref}: ${(err as Error).message}`, { cause: err });
    }
  }

  return {
    // Only a value can hold `":"sha256:` unescaped: inside a JSON string the quotes would be `\"`.
    wants: (email) => email.includes('":"sha256:'),
    async apply(entry, _store, signal) {
      const email = entry as unknown as WebhookEmail;
      // Taken before signing: each URL then lives at least until the time the payload gives.
      const expiresAt = Date.now() + ttl * 1000;
      let budget = options.mode === 'inline' ? options.inlineMaxBytes : 0;
      for (const attachment of Array.isArray(email.attachments) ? email.attachments : []) {
        if (typeof attachment.ref !== 'string') continue;
        if (options.mode === 'inline' && attachment.size <= budget) {
          attachment.contentBase64 = (await readWhole(store, attachment.ref, signal)).toString('base64');
          budget -= attachment.size;
        } else if (signs) {
          attachment.url = await urlOf(attachment.ref);
        }
      }
      if (!signs) return;
      if (typeof email.raw?.ref === 'string') email.raw.url = await urlOf(email.raw.ref);
      if (typeof email.textRef === 'string') email.textUrl = await urlOf(email.textRef);
      if (typeof email.htmlRef === 'string') email.htmlUrl = await urlOf(email.htmlRef);
      email.urlsExpireAt = new Date(expiresAt).toISOString();
    },
  };
}
