// JSONL file sink: one line per email, a batch appended in one write and fsynced before its
// outcomes are given, so a delivered email is on disk. Batches from several account loops are
// written one after another, never interleaved.
import { mkdir, open, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DELIVERED, type Outcome, type Sink } from './types.ts';

/** The producer writes compact JSON (no raw newline); anything else is re-serialised to one line. */
function oneLine(email: string): string {
  return email.includes('\n') ? JSON.stringify(JSON.parse(email)) : email;
}

/** Whether the file ends inside a line (a write that failed half-way, e.g. on a full disk). */
async function endsMidLine(file: FileHandle): Promise<boolean> {
  const { size } = await file.stat();
  if (size === 0) return false;
  const last = Buffer.alloc(1);
  await file.read(last, 0, 1, size - 1);
  return last[0] !== 0x0a;
}

export function createJsonlSink(url: string): Sink {
  const path = fileURLToPath(url);
  /** The open file, shared by check() and the writes so it is opened once. */
  let opened: Promise<FileHandle> | undefined;
  /** Set when the file ends inside a line: the next write starts a fresh one. */
  let startNewLine = false;
  /** The write under way; the next batch waits for it (two appends at once could interleave). */
  let previous: Promise<unknown> = Promise.resolve();
  let closing: Promise<void> | undefined;

  async function openFile(): Promise<FileHandle> {
    await mkdir(dirname(path), { recursive: true });
    // 'a+': appends, and lets endsMidLine read the last byte.
    const f = await open(path, 'a+', 0o640);
    try {
      startNewLine = await endsMidLine(f);
      return f;
    } catch (err) {
      await f.close().catch(() => undefined);
      throw err;
    }
  }

  function file(): Promise<FileHandle> {
    opened ??= openFile().catch((err: unknown) => { opened = undefined; throw err; });
    return opened;
  }

  /** Closes the file; the next use opens it again. */
  async function release(): Promise<void> {
    const f = opened;
    opened = undefined;
    await f?.then((h) => h.close(), () => undefined);
  }

  async function append(text: string): Promise<void> {
    try {
      const f = await file();
      await f.appendFile(startNewLine ? `\n${text}` : text);
      startNewLine = false;
      await f.sync();
    } catch (err) {
      // Reopened by the next batch, which then looks again for a half-written line.
      await release().catch(() => undefined);
      throw err;
    }
  }

  return {
    kind: 'jsonl',
    async deliver(batch) {
      const outcomes: Outcome[] = [];
      const lines: string[] = [];
      for (const delivery of batch) {
        try {
          lines.push(oneLine(delivery.email));
          outcomes.push(DELIVERED);
        } catch {
          outcomes.push({ status: 'permanent', reason: 'the stream entry\'s email is not valid JSON' });
        }
      }
      if (lines.length === 0) return outcomes;
      const write = previous.then(() => append(`${lines.join('\n')}\n`));
      previous = write.catch(() => undefined);
      try {
        await write;
        return outcomes;
      } catch (err) {
        const code = (err as { code?: unknown }).code;
        const reason = `cannot append to ${path}: ${typeof code === 'string' ? code : (err as Error).message}`;
        return outcomes.map((o): Outcome => (o.status === 'delivered' ? { status: 'retry', kind: 'sink-unavailable', reason } : o));
      }
    },
    async check() { await file(); },
    async close() {
      closing ??= previous.then(release);
      await closing;
    },
  };
}
