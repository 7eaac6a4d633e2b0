// mailparser's streaming parser, keeping only what an entry needs. simpleParser buffers every
// attachment whole (and inlines cid images into the html): a 25 MB attachment took a process
// from ~90 MB to ~340 MB RSS, the streaming route to ~150 MB. Attachments are hashed as they
// stream past and never kept: with a blob store they stream into it on the way.
import { createHash } from 'node:crypto';
import { MailParser, type AttachmentStream, type HeaderLines, type Headers, type MessageText } from 'mailparser';
import type { AttachmentMeta } from '../core/entry.ts';
import type { BlobWrites } from './blob-writes.ts';

export interface ParsedMail {
  headers: Headers;
  headerLines: HeaderLines;
  text: string | null;
  html: string | null;
  attachments: AttachmentMeta[];
}

const OPTIONS = { skipHtmlToText: true, skipTextToHtml: true, skipImageLinks: true, skipTextLinks: true, keepCidLinks: true };

function describe(attachment: AttachmentStream, size: number, sha256: string): AttachmentMeta {
  return {
    filename: attachment.filename ?? null,
    contentType: attachment.contentType,
    size,
    sha256,
    contentId: attachment.contentId ?? null,
    disposition: attachment.contentDisposition ?? null,
  };
}

function hashAttachment(attachment: AttachmentStream): Promise<AttachmentMeta> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    let size = 0;
    attachment.content.on('data', (chunk: Buffer) => { hash.update(chunk); size += chunk.length; });
    attachment.content.once('error', reject);
    attachment.content.once('end', () => {
      attachment.release?.();
      resolve(describe(attachment, size, hash.digest('hex')));
    });
  });
}

/** The store hashes what it is given: its ref is the attachment's sha256. */
async function storeAttachment(attachment: AttachmentStream, blobs: BlobWrites): Promise<AttachmentMeta> {
  attachment.content.once('end', () => attachment.release?.());
  const put = await blobs.putAttachment(attachment.content);
  return { ...describe(attachment, put.size, put.sha256), ref: put.ref };
}

/**
 * A parser fed chunk by chunk (`null` ends the message); `result` settles after the end. With
 * `blobs`, each attachment's decoded content is put in the blob store.
 */
export function parseMailStream(blobs?: BlobWrites): { feed(chunk: Buffer | null): void; result: Promise<ParsedMail> } {
  const parser = new MailParser(OPTIONS);
  const parsed: ParsedMail = { headers: new Map(), headerLines: [], text: null, html: null, attachments: [] };
  const hashing: Array<Promise<AttachmentMeta>> = [];
  let failed = false;
  const result = new Promise<ParsedMail>((resolve, reject) => {
    const fail = (err: Error) => { if (!failed) { failed = true; parser.destroy(); reject(err); } };
    parser.on('headers', (headers: Headers) => { parsed.headers = headers; parsed.headerLines = parser.headerLines || []; });
    parser.on('data', (part: AttachmentStream | MessageText) => {
      if (part.type === 'attachment') {
        const meta = blobs ? storeAttachment(part, blobs) : hashAttachment(part);
        meta.catch(() => undefined); // reported at the end of the message, with the others
        hashing.push(meta);
      }
      else {
        parsed.text = part.text ?? null;
        parsed.html = typeof part.html === 'string' ? part.html : null;
      }
    });
    parser.on('error', fail);
    parser.on('end', () => {
      Promise.all(hashing).then((attachments) => {
        parsed.attachments = attachments;
        resolve(parsed);
      }, fail);
    });
  });
  return {
    result,
    feed(chunk) {
      if (failed) return;
      if (chunk === null) parser.end();
      else parser.write(chunk);
    },
  };
}
