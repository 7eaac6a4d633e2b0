// A look at the raw header block, for what mailparser smooths over silently: it accepts stray
// lines, unterminated multiparts and unreadable dates without a word, but an entry built from
// such a message should say it is damaged (`parseError`), and keep the raw headers when mailparser
// gives up entirely.

const HEADER_END = /\r?\n\r?\n/;
/** Header blocks longer than this are not looked at (they are not mail anyone sends). */
export const HEAD_LIMIT = 256 * 1024;

/** The header block of a message (or of its first HEAD_LIMIT bytes); `complete` once its end was seen. */
export function headerBlock(head: Buffer): { block: Buffer; complete: boolean } {
  // Headers are ASCII by rule; latin1 keeps byte offsets equal to string offsets.
  const text = head.subarray(0, HEAD_LIMIT).toString('latin1');
  const end = HEADER_END.exec(text);
  return end ? { block: head.subarray(0, end.index), complete: true } : { block: head.subarray(0, text.length), complete: head.length >= HEAD_LIMIT };
}

export function rawHeaderBlock(raw: Buffer): Buffer {
  return headerBlock(raw).block;
}

function unfoldedLines(head: Buffer): string[] {
  return rawHeaderBlock(head).toString('utf8').split(/\r?\n/);
}

/** First value of a header in the raw block (unfolded), or null. */
export function rawHeaderValue(head: Buffer, name: string): string | null {
  const lines = unfoldedLines(head);
  const prefix = `${name.toLowerCase()}:`;
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i]!.toLowerCase().startsWith(prefix)) continue;
    let value = lines[i]!.slice(prefix.length);
    while (i + 1 < lines.length && /^[ \t]/.test(lines[i + 1]!)) value += ` ${lines[++i]!.trim()}`;
    return value.trim();
  }
  return null;
}

/** The top-level multipart boundary, if the message is multipart. */
export function multipartBoundary(head: Buffer): string | undefined {
  const contentType = rawHeaderValue(head, 'content-type') ?? '';
  return /multipart\/[^;]*;.*boundary="?([^";]+)"?/i.exec(contentType)?.[1];
}

/** Damage mailparser tolerates without telling; empty for a well-formed message. */
export function findStructuralProblems(head: Buffer, closingBoundarySeen: boolean): string[] {
  const problems: string[] = [];
  const lines = unfoldedLines(head);
  if (lines.some((l, i) => l.length > 0 && !/^[ \t]/.test(l) && !/^[!-9;-~]+:/.test(l) && !(i === 0 && l.startsWith('From ')))) {
    problems.push('header line without a field name');
  }
  const date = rawHeaderValue(head, 'date');
  if (date !== null && Number.isNaN(Date.parse(date))) problems.push('Date header is not a date');
  if (multipartBoundary(head) !== undefined && !closingBoundarySeen) problems.push('multipart body without its closing boundary');
  return problems;
}
