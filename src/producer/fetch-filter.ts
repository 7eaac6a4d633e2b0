// FETCH_FILTER at the server: the parsed expression (src/config/search-filter.ts) becomes
// imapflow's search query, sent as a plain SEARCH, or, when it holds X-GM-RAW, as Gmail's own
// search, which only a server with X-GM-EXT-1 understands. The choice is made once per session
// from the server's capabilities; a Gmail search on another server is a configuration error.
import type { SearchObject } from 'imapflow';
import type { SearchKey } from '../config/search-filter.ts';
import { usesGmailRaw } from '../config/search-filter.ts';
import { ConfigError } from '../core/errors.ts';

export interface FilterSearch {
  /** How the server is asked: a standard SEARCH, or one carrying Gmail's X-GM-RAW. */
  via: 'search' | 'x-gm-raw';
  query: SearchObject;
}

/** YYYY-MM-DD as the Date imapflow formats as an IMAP date (it uses the UTC day). */
const day = (date: string) => new Date(`${date}T00:00:00Z`);

/**
 * The keys of one object are ANDed by imapflow; a key met twice (NOT FROM a NOT FROM b) goes into
 * a one-operand OR, which imapflow sends as that operand alone: still an AND at the server.
 */
function and(parts: SearchObject[]): SearchObject {
  const merged: SearchObject = {};
  const rest: SearchObject[] = [];
  for (const part of parts) {
    if (Object.keys(part).some((k) => k in merged)) rest.push(part);
    else Object.assign(merged, part);
  }
  if (rest.length === 0) return merged;
  const nested = and(rest);
  if (!('or' in merged)) return { ...merged, or: [nested] };
  return { or: [merged], not: { not: nested } };
}

export function toSearchObject(key: SearchKey): SearchObject {
  switch (key.op) {
    case 'flag': return { [key.name]: key.set };
    case 'state': return { [key.name]: true };
    case 'text': return { [key.field]: key.value };
    case 'header': return { header: { [key.name]: key.value } };
    case 'keyword': return key.set ? { keyword: key.value } : { unKeyword: key.value };
    case 'date': return { [key.field]: day(key.date) };
    case 'size': return { [key.field]: key.bytes };
    case 'gmail-raw': return { gmraw: key.query };
    case 'not': return { not: toSearchObject(key.key) };
    case 'or': return { or: [toSearchObject(key.left), toSearchObject(key.right)] };
    case 'and': return and(key.keys.map(toSearchObject));
  }
}

/** How this server is asked for the filter's UIDs; throws a ConfigError when it cannot be. */
export function filterSearch(filter: SearchKey, capabilities: { has(name: string): boolean }): FilterSearch {
  const gmail = usesGmailRaw(filter);
  if (gmail && !capabilities.has('X-GM-EXT-1')) {
    throw new ConfigError('FETCH_FILTER', 'X-GM-RAW is Gmail\'s search and this IMAP server does not offer it (no X-GM-EXT-1): use standard SEARCH keys');
  }
  return { via: gmail ? 'x-gm-raw' : 'search', query: toSearchObject(filter) };
}
