// Blob references: what an entry stores to name an object in the blob store. A ref is the
// object's content address, `sha256:<64 hex>`, and says nothing about where the store is, so a
// store can move (imported into another, a bucket replicated) without touching one entry. The
// loose layout, one object at `sha256/<2 hex>/<2 hex>/<64 hex>`, is S3's keys below the prefix and
// the format of backups and of `blob import`; the file store keeps packs with an index instead.

const REF = /^sha256:([0-9a-f]{64})$/;
const REF_ANYWHERE = /sha256:[0-9a-f]{64}/g;

export function refOf(sha256: string): string {
  return `sha256:${sha256}`;
}

/** The sha256 a ref names, or undefined when it is not a ref. */
export function sha256OfRef(ref: string): string | undefined {
  return REF.exec(ref)?.[1];
}

export function isRef(ref: string): boolean {
  return REF.test(ref);
}

/** Where an object lives below the store's root (a directory or a bucket prefix). */
export function objectPath(ref: string): string {
  const sha = sha256OfRef(ref);
  if (!sha) throw new Error(`not a blob ref: ${ref}`);
  return `sha256/${sha.slice(0, 2)}/${sha.slice(2, 4)}/${sha}`;
}

/** The ref of an object path below the store's root, or undefined for anything else (temp files). */
export function refOfPath(path: string): string | undefined {
  const match = /^sha256\/([0-9a-f]{2})\/([0-9a-f]{2})\/([0-9a-f]{64})$/.exec(path);
  if (!match || !match[3]!.startsWith(match[1]! + match[2]!)) return undefined;
  return refOf(match[3]!);
}

/**
 * Every ref in a text (an entry's JSON, a dead letter's fields). Used by the garbage collector:
 * a ref quoted in a mail body also counts, which only ever keeps a blob longer.
 */
export function refsIn(text: string): string[] {
  return text.match(REF_ANYWHERE) ?? [];
}
