// Follows a JSONL file as a sink writes it: every complete new line is parsed and handed over with
// the time it was seen, so the demo can count deliveries and the load test and bench can time them.
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';

export interface TailOptions {
  /** How often the file is checked for new bytes. @default 20 */
  intervalMs?: number;
  onLine(line: Record<string, unknown>, seenAtMs: number): void;
}

export interface JsonlTail {
  /** Reads whatever is new now (also done on every tick). */
  poll(): void;
  /** Complete lines read so far, including any that were not valid JSON. */
  lines(): number;
  close(): void;
}

const CHUNK = 1 << 20;

export function tailJsonl(path: string, options: TailOptions): JsonlTail {
  let offset = 0;
  let pending = '';
  let count = 0;
  const buffer = Buffer.allocUnsafe(CHUNK);
  const poll = () => {
    if (!existsSync(path) || statSync(path).size <= offset) return;
    const fd = openSync(path, 'r');
    try {
      for (;;) {
        const read = readSync(fd, buffer, 0, CHUNK, offset);
        if (read <= 0) break;
        offset += read;
        pending += buffer.toString('utf8', 0, read);
      }
    } finally {
      closeSync(fd);
    }
    const now = Date.now();
    let newline = pending.indexOf('\n');
    while (newline >= 0) {
      const text = pending.slice(0, newline);
      pending = pending.slice(newline + 1);
      newline = pending.indexOf('\n');
      if (!text.trim()) continue;
      count += 1;
      try { options.onLine(JSON.parse(text) as Record<string, unknown>, now); } catch { /* a torn or foreign line: counted, not parsed */ }
    }
  };
  const timer = setInterval(poll, options.intervalMs ?? 20);
  return { poll, lines: () => count, close: () => clearInterval(timer) };
}
