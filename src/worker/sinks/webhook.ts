// Webhook sink: one POST per email, body = the email JSON exactly as handed over (as the producer
// wrote it, or with blobs read back and linked: blob-bodies.ts), the emails of a batch sent side
// by side (at most `concurrency` in flight across every call) over fetch's keep-alive
// connections. Each email gets its own outcome from its own answer.
import { createHmac } from 'node:crypto';
import { connect } from 'node:net';
import type { SinkFailureKind } from '../../core/errors.ts';
import { deliverEach, InFlightLimit, NOT_ATTEMPTED } from './in-flight.ts';
import { DELIVERED, type Delivery, type Outcome, type Sink } from './types.ts';

export interface WebhookOptions {
  url: string;
  secret: string | undefined;
  timeoutMs: number;
  /** Requests in flight at once across every call of the sink (WORKER_CONCURRENCY). */
  concurrency: number;
}

const BODY_EXCERPT_CHARS = 300;
/**
 * A connection goes back to the pool only once its response body was read to the end. Bodies up
 * to this size are read (and dropped); a longer one is cancelled, which costs that connection.
 */
const DRAIN_LIMIT_BYTES = 64 * 1024;

type RetryKind = Exclude<SinkFailureKind, 'sink-rejected'>;

function retry(reason: string, kind: RetryKind, retryAfterMs?: number): Outcome {
  return retryAfterMs === undefined ? { status: 'retry', reason, kind } : { status: 'retry', reason, kind, retryAfterMs };
}

/** `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`: the timestamp defeats replays. */
export function signatureHeader(secret: string, body: string, nowSeconds: number): string {
  const v1 = createHmac('sha256', secret).update(`${nowSeconds}.${body}`).digest('hex');
  return `t=${nowSeconds},v1=${v1}`;
}

/** Retry-After is either seconds or an HTTP date; anything else is ignored. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  // An HTTP date names its weekday and month; Date.parse alone would take "-3" for a year.
  if (!/[a-z]/i.test(value)) return undefined;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/**
 * What one HTTP answer means for its email. `where` names the endpoint without credentials;
 * `body` is the start of the response body.
 */
export function outcomeForAnswer(where: string, status: number, body: string, retryAfter: string | null, now = Date.now()): Outcome {
  if (status >= 200 && status < 300) return DELIVERED;
  const answered = `webhook ${where} answered ${status}${body ? `: ${body}` : ''}`;
  if (status === 429) return retry(answered, 'sink-rate-limited', parseRetryAfter(retryAfter, now));
  if (status === 503) return retry(answered, 'sink-unavailable', parseRetryAfter(retryAfter, now));
  if (status === 502 || status === 504) return retry(answered, 'sink-unavailable');
  if (status === 408 || status >= 500) return retry(answered, 'sink-failed');
  if (status >= 400) return { status: 'permanent', reason: `webhook ${where} refused the email with ${status}${body ? `: ${body}` : ''}` };
  // Redirects are not followed: fetch would turn a POST redirected by 301/302 into a GET without
  // the email, and a 2xx to that GET would count as delivered.
  if (status >= 300 && status < 400) return retry(`${answered} (redirects are not followed: point SINK_URL at the final address)`, 'sink-failed');
  return retry(answered, 'sink-failed');
}

/** fetch refuses a URL carrying credentials: they travel as HTTP Basic auth, and no reason names them. */
function endpointOf(url: string): { endpoint: string; where: string; authorization: string | undefined } {
  const target = new URL(url);
  let authorization: string | undefined;
  if (target.username || target.password) {
    const user = decodeURIComponent(target.username);
    const password = decodeURIComponent(target.password);
    authorization = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
    target.username = '';
    target.password = '';
  }
  // The query string may carry a token too: reasons name the origin and path only.
  return { endpoint: target.href, where: `${target.protocol}//${target.host}${target.pathname}`, authorization };
}

/** Reads the body to its end (so the connection is reused) up to DRAIN_LIMIT_BYTES; returns the first `keepChars`. */
async function drain(response: Response, keepChars: number): Promise<string> {
  const reader = response.body?.getReader();
  if (!reader) return '';
  const kept: Uint8Array[] = [];
  let keptBytes = 0;
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      // UTF-8 is at most 4 bytes a character: enough bytes for keepChars characters.
      if (keptBytes < keepChars * 4) { kept.push(value); keptBytes += value.byteLength; }
      if (total > DRAIN_LIMIT_BYTES) { await reader.cancel(); break; }
    }
  } catch {
    // A body cut off (timeout, reset) still leaves the status, which decides the outcome.
  }
  if (keepChars === 0) return '';
  const text = Buffer.concat(kept).toString('utf8');
  return text.length > keepChars ? `${text.slice(0, keepChars)}…` : text;
}

/** What the network layer said, without the URL: fetch puts the reason in `cause`. */
function networkFailure(err: unknown): string {
  const cause = (err as { cause?: unknown }).cause;
  const source = (cause instanceof Error ? cause : err) as Error & { code?: unknown };
  return typeof source.code === 'string' ? source.code : source.message || source.name;
}

export function createWebhookSink(options: WebhookOptions): Sink {
  const { endpoint, where, authorization } = endpointOf(options.url);
  const target = new URL(endpoint);
  const limit = new InFlightLimit(options.concurrency);

  function requestHeaders(delivery: Delivery): Headers {
    const headers = new Headers({
      'content-type': 'application/json',
      'idempotency-key': delivery.key,
      'x-mailstream-entry-id': delivery.id,
      // The key names a message, not an account's copy of it: a receiver that keeps accounts apart
      // stores (account, key). Percent-encoded only where it would not fit a header.
      'x-mailstream-account': /^[\x20-\x7e]*$/.test(delivery.account) ? delivery.account : encodeURIComponent(delivery.account),
      'x-mailstream-attempt': String(delivery.previousAttempts + 1),
      // What the body is: message.new (an email) or a change to one sent before (TRACK_CHANGES).
      'x-mailstream-event': delivery.type ?? 'message.new',
    });
    if (options.secret) headers.set('x-mailstream-signature', signatureHeader(options.secret, delivery.email, Math.floor(Date.now() / 1000)));
    if (authorization) headers.set('authorization', authorization);
    return headers;
  }

  async function post(delivery: Delivery, signal: AbortSignal): Promise<Outcome> {
    let headers: Headers;
    try {
      headers = requestHeaders(delivery);
    } catch {
      // The same key fails the same way on every attempt.
      return { status: 'permanent', reason: 'the idempotency key cannot be sent as an HTTP header (characters outside Latin-1 or a line break)' };
    }
    const timeout = AbortSignal.timeout(options.timeoutMs);
    let response: Response;
    try {
      response = await fetch(endpoint, { method: 'POST', headers, body: delivery.email, redirect: 'manual', signal: AbortSignal.any([signal, timeout]) });
    } catch (err) {
      if (signal.aborted) return NOT_ATTEMPTED;
      if (timeout.aborted) return retry(`webhook ${where} did not answer within ${options.timeoutMs} ms`, 'sink-timeout');
      return retry(`webhook ${where} unreachable: ${networkFailure(err)}`, 'sink-unavailable');
    }
    const ok = response.status >= 200 && response.status < 300;
    const body = await drain(response, ok ? 0 : BODY_EXCERPT_CHARS);
    // fetch puts the socket back in its pool a moment after the body's end reaches us: wait for
    // that, or the next request (started as soon as this slot frees) opens a connection of its own.
    await new Promise((resolve) => setImmediate(resolve));
    return outcomeForAnswer(where, response.status, body, response.headers.get('retry-after'));
  }

  return {
    kind: 'webhook',
    deliver: (batch, signal) => deliverEach(batch, limit, signal, (delivery) => post(delivery, signal)),
    check: () => new Promise<void>((resolve, reject) => {
      const port = Number(target.port || (target.protocol === 'https:' ? 443 : 80));
      const socket = connect({ host: target.hostname.replace(/^\[|\]$/g, ''), port, timeout: 1_000 });
      socket.once('connect', () => { socket.destroy(); resolve(); });
      socket.once('timeout', () => { socket.destroy(); reject(new Error(`webhook ${where} does not answer`)); });
      socket.once('error', (err) => { socket.destroy(); reject(new Error(`webhook ${where} does not answer: ${err.message}`)); });
    }),
    async close() {},
  };
}
