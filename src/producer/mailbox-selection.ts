// Which mailboxes IMAP_MAILBOXES names, given what the server lists. A plain name is taken as it
// is; `*` alone is every mailbox that can be selected except the ones SPECIAL-USE (RFC 6154) marks
// as trash, junk or drafts, which hold nothing anyone wants ingested; any other name with `*` or `%`
// is a pattern as LIST reads it (`*` matches anything, `%` stops at the hierarchy separator), with
// the same three left out. Pure: the listing comes from mailbox-directory.ts.

export interface ListedMailbox {
  path: string;
  /** The hierarchy separator ('/' on Gmail and most servers, '.' on a Maildir Dovecot). */
  delimiter: string;
  /** LIST attributes (\Noselect, \HasChildren, ...). */
  flags: ReadonlySet<string>;
  /** SPECIAL-USE (\Trash, \Junk, \Drafts, \Sent, \All, ...), if the server marks one. */
  specialUse?: string;
}

/** Never read through a pattern. */
const LEFT_OUT = new Set(['\\trash', '\\junk', '\\drafts']);
const UNSELECTABLE = new Set(['\\noselect', '\\nonexistent']);

export function isPattern(name: string): boolean {
  return name.includes('*') || name.includes('%');
}

function patternRegExp(pattern: string, delimiter: string): RegExp {
  const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const notDelimiter = delimiter ? `[^${escape(delimiter)}]*` : '.*';
  const body = [...pattern].map((c) => (c === '*' ? '.*' : c === '%' ? notDelimiter : escape(c))).join('');
  // INBOX is case-insensitive (RFC 3501 5.1), every other name is not.
  return new RegExp(`^${body}$`, /^inbox/i.test(pattern) ? 'i' : '');
}

function readable(box: ListedMailbox): boolean {
  const flags = [...box.flags].map((f) => f.toLowerCase());
  if (flags.some((f) => UNSELECTABLE.has(f))) return false;
  return !LEFT_OUT.has((box.specialUse ?? '').toLowerCase()) && !flags.some((f) => LEFT_OUT.has(f));
}

/** The mailboxes to read, in the order named (a pattern's matches in the server's order), each once. */
export function selectMailboxes(wanted: readonly string[], listed: readonly ListedMailbox[]): string[] {
  const chosen = new Set<string>();
  for (const name of wanted) {
    if (!isPattern(name)) { chosen.add(name); continue; }
    for (const box of listed) {
      if (readable(box) && patternRegExp(name, box.delimiter).test(box.path)) chosen.add(box.path);
    }
  }
  return [...chosen];
}
