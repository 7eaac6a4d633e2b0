// Live counts for the demo: redrawn in place on a terminal, plain lines (only when something
// changed) when the output is a file or a pipe, so logs of a CI run stay readable.

export interface ProgressCounts { appended: number; delivered: number; expected: number }

export interface ProgressView {
  update(counts: ProgressCounts): void;
  /** Prints a message on its own line (the live line is redrawn after it). */
  note(message: string): void;
  done(): void;
}

const BAR_WIDTH = 30;

export function formatCounts({ appended, delivered, expected }: ProgressCounts): string {
  const share = expected > 0 ? Math.min(1, delivered / expected) : 0;
  const filled = Math.round(share * BAR_WIDTH);
  const bar = `${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}`;
  return `[${bar}] appended ${appended}/${expected}  delivered ${delivered}/${expected}`;
}

export function progressView(out: NodeJS.WritableStream & { isTTY?: boolean }): ProgressView {
  const tty = out.isTTY === true;
  let last = '';
  let drawn = false;
  return {
    update(counts) {
      const line = formatCounts(counts);
      if (line === last) return;
      last = line;
      if (tty) { out.write(`\r\x1b[2K${line}`); drawn = true; } else out.write(`${line}\n`);
    },
    note(message) {
      if (tty && drawn) out.write('\r\x1b[2K');
      out.write(`${message}\n`);
      if (tty && drawn) out.write(last);
    },
    done() {
      if (tty && drawn) out.write('\n');
      drawn = false;
    },
  };
}
