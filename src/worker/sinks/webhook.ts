// Webhook sink: one POST per email, body = the email JSON exactly as the producer wrote it.
// 2xx delivered; 408, 429 (with Retry-After), 5xx, timeouts and connection errors are retried;
// any other 4xx is permanent (the receiver refuses this email), carried to the DLQ with the
// status and the start of the response body.
import { createHmac } from 'node:crypto';
import { connect } from 'node:net';
import { PermanentDeliveryError, TransientDeliveryError } from '../../core/errors.ts';
import type { Delivery, Sink } from './types.ts';

export interface WebhookOptions {
  url: string;
  secret: string | undefined;
  timeoutMs: number;
}

const BODY_EXCERPT_CHARS = 300;

/** `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`: the timestamp defeats replays. */
export function signatureHeader(secret: string, body: string, nowSeconds: number): string {
  const v1 = createHmac('sha256', secret).update(`${nowSeconds}.${body}`).digest('hex');
  return `t=${nowSeconds},v1=${v1}`;
}

/** Retry-After is either seconds or an HTTP date. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

async function excerpt(response: Response): Promise<string> {
  try {
    const text = await response.text();
    return text.length > BODY_EXCERPT_CHARS ? `${text.slice(0, BODY_EXCERPT_CHARS)}…` : text;
  } catch {
    return '';
  }
}

export function createWebhookSink(options: WebhookOptions): Sink {
  const target = new URL(options.url);
  // The URL may carry credentials; errors name only where it points.
  const where = `${target.protocol}//${target.host}${target.pathname}`;

  async function post(delivery: Delivery, signal: AbortSignal): Promise<void> {
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'idempotency-key': delivery.key,
      'x-mailstream-entry-id': delivery.id,
      'x-mailstream-attempt': String(delivery.previousAttempts + 1),
    };
    if (options.secret) headers['x-mailstream-signature'] = signatureHeader(options.secret, delivery.email, Math.floor(Date.now() / 1000));
    const timeout = AbortSignal.timeout(options.timeoutMs);
    let response: Response;
    try {
      response = await fetch(options.url, { method: 'POST', headers, body: delivery.email, signal: AbortSignal.any([signal, timeout]) });
    } catch (err) {
      const reason = timeout.aborted ? `timed out after ${options.timeoutMs} ms` : `failed: ${(err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : (err as Error).message}`;
      throw new TransientDeliveryError(`webhook ${where} ${reason}`, { code: timeout.aborted ? 'ERR_WEBHOOK_TIMEOUT' : 'ERR_WEBHOOK_CONNECTION' });
    }
    const status = response.status;
    if (status >= 200 && status < 300) {
      await response.body?.cancel().catch(() => undefined);
      return;
    }
    const body = await excerpt(response);
    if (status === 408 || status === 429 || status >= 500) {
      throw new TransientDeliveryError(`webhook ${where} answered ${status}: ${body}`, {
        code: `ERR_WEBHOOK_${status}`,
        retryAfterMs: status === 429 || status === 503 ? parseRetryAfter(response.headers.get('retry-after')) : undefined,
      });
    }
    if (status >= 400) throw new PermanentDeliveryError(`webhook ${where} refused the email with ${status}: ${body}`, { code: `ERR_WEBHOOK_${status}` });
    throw new TransientDeliveryError(`webhook ${where} answered ${status}: ${body}`, { code: `ERR_WEBHOOK_${status}` });
  }

  return {
    kind: 'webhook',
    mode: 'each',
    async deliver(deliveries, signal) {
      for (const delivery of deliveries) await post(delivery, signal);
    },
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
