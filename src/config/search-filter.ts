// FETCH_FILTER: an IMAP SEARCH expression (RFC 3501 section 6.4.4) limiting what a backfill reads,
// parsed once at start-up so a typo stops the producer with a ConfigError instead of failing on
// every mailbox. Keys are ANDed; NOT and OR take the next key(s); parentheses group. On Gmail the
// expression may use X-GM-RAW "<Gmail search>" (needs X-GM-EXT-1, checked when a mailbox opens).

export type SearchKey =
  | { op: 'flag'; name: 'answered' | 'deleted' | 'draft' | 'flagged' | 'seen'; set: boolean }
  | { op: 'state'; name: 'all' | 'new' | 'old' | 'recent' }
  | { op: 'text'; field: 'bcc' | 'body' | 'cc' | 'from' | 'subject' | 'text' | 'to'; value: string }
  | { op: 'header'; name: string; value: string }
  | { op: 'keyword'; value: string; set: boolean }
  | { op: 'date'; field: 'before' | 'on' | 'since' | 'sentBefore' | 'sentOn' | 'sentSince'; date: string }
  | { op: 'size'; field: 'larger' | 'smaller'; bytes: number }
  | { op: 'gmail-raw'; query: string }
  | { op: 'not'; key: SearchKey }
  | { op: 'or'; left: SearchKey; right: SearchKey }
  | { op: 'and'; keys: SearchKey[] };

const FLAGS: Record<string, [Extract<SearchKey, { op: 'flag' }>['name'], boolean]> = {
  ANSWERED: ['answered', true], DELETED: ['deleted', true], DRAFT: ['draft', true], FLAGGED: ['flagged', true], SEEN: ['seen', true],
  UNANSWERED: ['answered', false], UNDELETED: ['deleted', false], UNDRAFT: ['draft', false], UNFLAGGED: ['flagged', false], UNSEEN: ['seen', false],
};
const STATES = { ALL: 'all', NEW: 'new', OLD: 'old', RECENT: 'recent' } as const;
const TEXTS = { BCC: 'bcc', BODY: 'body', CC: 'cc', FROM: 'from', SUBJECT: 'subject', TEXT: 'text', TO: 'to' } as const;
const DATES = { BEFORE: 'before', ON: 'on', SINCE: 'since', SENTBEFORE: 'sentBefore', SENTON: 'sentOn', SENTSINCE: 'sentSince' } as const;
const SIZES = { LARGER: 'larger', SMALLER: 'smaller' } as const;
const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];

type Token = { kind: 'atom'; value: string } | { kind: 'string'; value: string } | { kind: '(' } | { kind: ')' };

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (/\s/.test(c)) { i++; continue; }
    if (c === '(' || c === ')') { tokens.push({ kind: c }); i++; continue; }
    if (c === '"') {
      let value = '';
      i++;
      for (;;) {
        if (i >= text.length) throw new Error('a quoted string is not closed');
        const d = text[i]!;
        if (d === '\\' && i + 1 < text.length) { value += text[i + 1]; i += 2; continue; }
        if (d === '"') { i++; break; }
        value += d;
        i++;
      }
      tokens.push({ kind: 'string', value });
      continue;
    }
    let value = '';
    while (i < text.length && !/[\s()"]/.test(text[i]!)) value += text[i++];
    tokens.push({ kind: 'atom', value });
  }
  return tokens;
}

/** `1-Jan-2025` (IMAP) or `2025-01-01` (ISO) as YYYY-MM-DD. */
function parseDate(text: string): string {
  const imap = /^(\d{1,2})-([A-Za-z]{3})-(\d{4})$/.exec(text);
  const iso = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text);
  let y: number; let m: number; let d: number;
  if (imap) { d = Number(imap[1]); m = MONTHS.indexOf(imap[2]!.toLowerCase()) + 1; y = Number(imap[3]); }
  else if (iso) { y = Number(iso[1]); m = Number(iso[2]); d = Number(iso[3]); }
  else throw new Error(`expected a date like 1-Jan-2025, not ${text}`);
  const date = new Date(Date.UTC(y, m - 1, d));
  if (m < 1 || date.getUTCDate() !== d || date.getUTCMonth() !== m - 1) throw new Error(`${text} is not a date`);
  return date.toISOString().slice(0, 10);
}

class Parser {
  private at = 0;
  private readonly tokens: Token[];
  constructor(tokens: Token[]) {
    this.tokens = tokens;
  }

  all(): SearchKey {
    const keys: SearchKey[] = [];
    while (this.at < this.tokens.length) keys.push(this.key());
    if (keys.length === 0) throw new Error('the expression is empty');
    return keys.length === 1 ? keys[0]! : { op: 'and', keys };
  }

  private next(): Token {
    const token = this.tokens[this.at++];
    if (!token) throw new Error('the expression ends too early');
    return token;
  }

  private value(what: string): string {
    const token = this.next();
    if (token.kind !== 'atom' && token.kind !== 'string') throw new Error(`${what} needs a value`);
    return token.value;
  }

  private key(): SearchKey {
    const token = this.next();
    if (token.kind === '(') {
      const keys: SearchKey[] = [];
      while (this.tokens[this.at]?.kind !== ')') {
        if (this.at >= this.tokens.length) throw new Error('a parenthesis is not closed');
        keys.push(this.key());
      }
      this.at++;
      if (keys.length === 0) throw new Error('empty parentheses');
      return keys.length === 1 ? keys[0]! : { op: 'and', keys };
    }
    if (token.kind === ')') throw new Error('a parenthesis closes that was not opened');
    if (token.kind === 'string') throw new Error(`"${token.value}" is not a search key`);
    const name = token.value.toUpperCase();
    const flag = FLAGS[name];
    if (flag) return { op: 'flag', name: flag[0], set: flag[1] };
    if (name in STATES) return { op: 'state', name: STATES[name as keyof typeof STATES] };
    if (name in TEXTS) return { op: 'text', field: TEXTS[name as keyof typeof TEXTS], value: this.value(name) };
    if (name in DATES) return { op: 'date', field: DATES[name as keyof typeof DATES], date: parseDate(this.value(name)) };
    if (name in SIZES) {
      const bytes = this.value(name);
      if (!/^\d+$/.test(bytes)) throw new Error(`${name} needs a size in bytes, not ${bytes}`);
      return { op: 'size', field: SIZES[name as keyof typeof SIZES], bytes: Number(bytes) };
    }
    switch (name) {
      case 'HEADER': return { op: 'header', name: this.value(name), value: this.value(name) };
      case 'KEYWORD': return { op: 'keyword', value: this.value(name), set: true };
      case 'UNKEYWORD': return { op: 'keyword', value: this.value(name), set: false };
      case 'X-GM-RAW': return { op: 'gmail-raw', query: this.value(name) };
      case 'NOT': return { op: 'not', key: this.key() };
      case 'OR': return { op: 'or', left: this.key(), right: this.key() };
      default: throw new Error(`unknown search key ${token.value}`);
    }
  }
}

/** Parses FETCH_FILTER; throws an Error saying what is wrong (the loader names the setting). */
export function parseSearchFilter(text: string): SearchKey {
  return new Parser(tokenize(text)).all();
}

/** Whether the expression needs Gmail's X-GM-EXT-1. */
export function usesGmailRaw(key: SearchKey): boolean {
  switch (key.op) {
    case 'gmail-raw': return true;
    case 'not': return usesGmailRaw(key.key);
    case 'or': return usesGmailRaw(key.left) || usesGmailRaw(key.right);
    case 'and': return key.keys.some(usesGmailRaw);
    default: return false;
  }
}
