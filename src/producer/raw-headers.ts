// A look at the raw header block, for what mailparser smooths over silently: it accepts stray
// lines, unterminated multiparts and unreadable dates without a word, but an entry built from
// such a message should say it is damaged (`parseError`), and keep the raw headers when mailparser
// gives up entirely.

const HEADER_END = /\r?\n\r?\n/;

export function rawHeaderBlock(raw: Buffer): Buffer {
  // Headers are ASCII by rule; latin1 keeps byte offsets equal to string offsets.
  const text = raw.subarray(0, Math.min(raw.length, 256 * 1024)).toString('latin1');
  const end = HEADER_END.exec(text);
  return raw.subarray(0, end ? end.index : text.length);
}

function unfoldedLines(raw: Buffer): string[] {
  return rawHeaderBlock(raw).toString('utf8').split(/\r?\n/);
}

/** First value of a header in the raw block (unfolded), or null. */
export function rawHeaderValue(raw: Buffer, name: string): string | null {
  const lines = unfoldedLines(raw);
  const prefix = `${name.toLowerCase()}:`;
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i]!.toLowerCase().startsWith(prefix)) continue;
    let value = lines[i]!.slice(prefix.length);
    while (i + 1 < lines.length && /^[ \t]/.test(lines[i + 1]!)) value += ` ${lines[++i]!.trim()}`;
    return value.trim();
  }
  return null;
}

/** Damage mailparser tolerates without telling; empty for a well-formed message. */
export function findStructuralProblems(raw: Buffer): string[] {
  const problems: string[] = [];
  const lines = unfoldedLines(raw);
  if (lines.some((l, i) => l.length > 0 && !/^[ \t]/.test(l) && !/^[!-9;-~]+:/.test(l) && !(i === 0 && l.startsWith('From ')))) {
    problems.push('header line without a field name');
  }
  const date = rawHeaderValue(raw, 'date');
  if (date !== null && Number.isNaN(Date.parse(date))) problems.push('Date header is not a date');
  const contentType = rawHeaderValue(raw, 'content-type') ?? '';
  const boundary = /multipart\/[^;]*;.*boundary="?([^";]+)"?/i.exec(contentType)?.[1];
  if (boundary && !raw.includes(`--${boundary}--`)) problems.push('multipart body without its closing boundary');
  return problems;
}
