// Pure helpers around the blob store: refs and object paths, finding refs in stored text, and
// reading Redis memory for the high watermark.
import { describe, expect, it } from 'vitest';
import { isRef, objectPath, refOf, refOfPath, refsIn, sha256OfRef } from '../../src/core/blobs/blob-ref.ts';
import { fullest, parseMemoryInfo } from '../../src/producer/redis-memory.ts';

const SHA = 'ab'.repeat(32);

describe('blob refs', () => {
  it('name content by sha256 and lay it out two levels deep', () => {
    expect(refOf(SHA)).toBe(`sha256:${SHA}`);
    expect(sha256OfRef(`sha256:${SHA}`)).toBe(SHA);
    expect(isRef(`sha256:${SHA}`)).toBe(true);
    expect(isRef(`sha256:${SHA.toUpperCase()}`)).toBe(false);
    expect(isRef('sha256:abc')).toBe(false);
    expect(objectPath(`sha256:${SHA}`)).toBe(`sha256/ab/ab/${SHA}`);
    expect(() => objectPath('../etc/passwd')).toThrow(/not a blob ref/);
  });

  it('read a path back only when it is an object of ours', () => {
    expect(refOfPath(`sha256/ab/ab/${SHA}`)).toBe(`sha256:${SHA}`);
    expect(refOfPath(`sha256/cd/ab/${SHA}`)).toBeUndefined();
    expect(refOfPath('tmp/put-0123')).toBeUndefined();
  });

  it('finds every ref in an entry or dead letter, wherever it sits', () => {
    const other = 'cd'.repeat(32);
    const entry = JSON.stringify({ raw: { ref: `sha256:${SHA}` }, attachments: [{ ref: `sha256:${other}` }], text: 'no ref here' });
    expect(refsIn(entry).sort()).toEqual([`sha256:${SHA}`, `sha256:${other}`]);
    expect(refsIn('nothing')).toEqual([]);
  });
});

describe('redis memory', () => {
  it('reads used_memory and maxmemory from INFO memory', () => {
    const info = '# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\nmaxmemory:4194304\r\nmaxmemory_human:4.00M\r\n';
    expect(parseMemoryInfo(info)).toEqual({ usedBytes: 1048576, maxBytes: 4194304 });
    expect(parseMemoryInfo('# Memory\r\n')).toBeNull();
  });

  it('takes the fullest server of a cluster; one without a limit counts least', () => {
    expect(fullest([{ usedBytes: 900, maxBytes: 0 }, { usedBytes: 50, maxBytes: 100 }, { usedBytes: 70, maxBytes: 100 }])).toEqual({ usedBytes: 70, maxBytes: 100 });
    expect(fullest([{ usedBytes: 1, maxBytes: 0 }, { usedBytes: 5, maxBytes: 0 }])).toEqual({ usedBytes: 5, maxBytes: 0 });
    expect(fullest([])).toBeNull();
  });
});
