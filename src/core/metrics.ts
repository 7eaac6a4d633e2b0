// Every Prometheus metric mailstream exports, defined once on a registry of our own (never the
// global one, so tests can run a producer and a worker in one process). Names carry their unit
// (`_total`, `_seconds`, `_bytes`); labels are bounded: mailbox names and sinks come from the
// configuration, never a message id or an address. The dashboard and alert rules are checked
// against this file by a test.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Role } from '../config/settings.ts';

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const E2E_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600];

export function createMetrics(role: Role, version = '0.1.0') {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const r = [registry];

  const m = {
    registry,
    buildInfo: new Gauge({ name: 'mailstream_build_info', help: 'Always 1; labels say what runs', labelNames: ['role', 'version'] as const, registers: r }),

    // --- producer ---
    emailsFetched: new Counter({ name: 'mailstream_emails_fetched_total', help: 'Messages fetched from IMAP', labelNames: ['account', 'mailbox'] as const, registers: r }),
    emailsAppended: new Counter({ name: 'mailstream_emails_appended_total', help: 'Entries appended to the stream', labelNames: ['account', 'mailbox'] as const, registers: r }),
    emailsSkipped: new Counter({ name: 'mailstream_emails_skipped_duplicate_total', help: 'Fetched messages not appended because their idempotency key was already ingested', labelNames: ['account', 'mailbox'] as const, registers: r }),
    parseErrors: new Counter({ name: 'mailstream_parse_errors_total', help: 'Messages appended with a parseError', labelNames: ['account', 'mailbox'] as const, registers: r }),
    fetchDuration: new Histogram({ name: 'mailstream_imap_fetch_duration_seconds', help: 'Time to fetch one batch from IMAP', labelNames: ['account', 'mailbox'] as const, buckets: LATENCY_BUCKETS, registers: r }),
    appendDuration: new Histogram({ name: 'mailstream_append_duration_seconds', help: 'Time of one atomic batch append to Redis', labelNames: ['account', 'mailbox'] as const, buckets: LATENCY_BUCKETS, registers: r }),
    imapConnected: new Gauge({ name: 'mailstream_imap_connected', help: '1 while the mailbox connection is logged in', labelNames: ['account', 'mailbox'] as const, registers: r }),
    imapReconnects: new Counter({ name: 'mailstream_imap_reconnects_total', help: 'IMAP reconnects after a failure or a dropped connection', labelNames: ['account', 'mailbox'] as const, registers: r }),
    imapErrors: new Counter({ name: 'mailstream_imap_errors_total', help: 'IMAP failures by kind: auth, throttled, over-quota, connection, uidvalidity, breaker-open', labelNames: ['account', 'mailbox', 'kind'] as const, registers: r }),
    imapConnectWaiting: new Gauge({ name: 'mailstream_imap_connect_waiting', help: 'IMAP logins waiting, by reason: rate (the IMAP_CONNECT_RATE pacer) or host-cap (IMAP_MAX_CONNECTIONS_PER_HOST, mailboxes waiting for their turn)', labelNames: ['reason'] as const, registers: r }),
    imapConnects: new Counter({ name: 'mailstream_imap_connects_total', help: 'IMAP logins started (each took a token of IMAP_CONNECT_RATE), by host', labelNames: ['host'] as const, registers: r }),
    imapRefused: new Gauge({ name: 'mailstream_imap_refused', help: '1 while the server refuses this mailbox (kind throttled or over-quota) and the producer waits before the next try', labelNames: ['account', 'mailbox', 'kind'] as const, registers: r }),
    lastPoll: new Gauge({ name: 'mailstream_mailbox_last_poll_timestamp_seconds', help: 'Unix time of the last successful check of the mailbox for new mail', labelNames: ['account', 'mailbox'] as const, registers: r }),
    lastImapResponse: new Gauge({ name: 'mailstream_imap_last_response_timestamp_seconds', help: 'Unix time of the last answer (IDLE, NOOP or fetch) from the IMAP server', labelNames: ['account', 'mailbox'] as const, registers: r }),
    changeEvents: new Counter({ name: 'mailstream_change_events_total', help: 'Changes to messages already ingested found with TRACK_CHANGES and appended as entries, by type: updated, moved, deleted (a look repeated after a crash finds the same ones again; Redis appends each once)', labelNames: ['account', 'mailbox', 'type'] as const, registers: r }),
    changeChecks: new Counter({ name: 'mailstream_change_checks_total', help: 'Looks at a mailbox for changes with TRACK_CHANGES, by how: condstore (CHANGEDSINCE, QRESYNC\'s VANISHED) or scan (every UID compared, without them)', labelNames: ['account', 'mailbox', 'how'] as const, registers: r }),
    uidValidityChanges: new Counter({ name: 'mailstream_uidvalidity_changes_total', help: 'UIDVALIDITY changes detected', labelNames: ['account', 'mailbox'] as const, registers: r }),
    tokenRefreshes: new Counter({ name: 'mailstream_oauth_token_refreshes_total', help: 'OAuth2 access-token refreshes', labelNames: ['account', 'result'] as const, registers: r }),
    producerPaused: new Gauge({ name: 'mailstream_producer_paused', help: '1 while fetching is paused: for backpressure (stream-full, consumer-lag), Redis memory (redis-memory) or the blob store (blob-store)', labelNames: ['account', 'mailbox', 'reason'] as const, registers: r }),
    backpressurePauses: new Counter({ name: 'mailstream_backpressure_pauses_total', help: 'Times fetching paused, by reason: consumers lag, the stream is full, Redis memory is high, the blob store does not take writes', labelNames: ['account', 'reason'] as const, registers: r }),
    streamTrimmed: new Counter({ name: 'mailstream_stream_trimmed_entries_total', help: 'Acknowledged entries trimmed from the stream', labelNames: ['account'] as const, registers: r }),
    leasesHeld: new Gauge({ name: 'mailstream_leases_held', help: 'Mailbox leases this producer holds', labelNames: ['account'] as const, registers: r }),
    leaseChanges: new Counter({ name: 'mailstream_lease_changes_total', help: 'Mailbox leases acquired, released (rebalancing, shutdown) or lost (expired or taken over)', labelNames: ['event'] as const, registers: r }),
    producersLive: new Gauge({ name: 'mailstream_producers_live', help: 'Producers sharing the mailboxes, as this producer last saw them', registers: r }),
    redisUsedMemory: new Gauge({ name: 'mailstream_redis_used_memory_bytes', help: 'Redis used_memory as the producer last read it (the largest master\'s on a cluster)', registers: r }),
    redisMaxMemory: new Gauge({ name: 'mailstream_redis_maxmemory_bytes', help: 'Redis maxmemory (0: no limit) of the same server', registers: r }),

    // --- blob store (producer) ---
    blobWrites: new Counter({ name: 'mailstream_blob_writes_total', help: 'Objects put in the blob store: created, or existing (the same content was there, nothing written)', labelNames: ['kind', 'result'] as const, registers: r }),
    blobWriteFailures: new Counter({ name: 'mailstream_blob_write_failures_total', help: 'Puts the blob store did not take, by kind of object; kind="barrier": a batch\'s objects not made durable by its barrier (the email waits, nothing is appended without its blobs)', labelNames: ['kind'] as const, registers: r }),
    blobWrittenBytes: new Counter({ name: 'mailstream_blob_written_bytes_total', help: 'Bytes of the objects created in the blob store', labelNames: ['kind'] as const, registers: r }),
    blobWriteDuration: new Histogram({ name: 'mailstream_blob_write_duration_seconds', help: 'Time of one put, from its first byte to the object being written; kind="barrier": making a batch\'s objects durable together, right before its append (where a file store waits on the disk)', labelNames: ['kind'] as const, buckets: LATENCY_BUCKETS, registers: r }),
    blobStoreUp: new Gauge({ name: 'mailstream_blob_store_up', help: '1 while the blob store takes writes (absent without a store)', registers: r }),

    // --- worker ---
    emailsDelivered: new Counter({ name: 'mailstream_emails_delivered_total', help: 'Emails a sink accepted', labelNames: ['sink'] as const, registers: r }),
    deliveryFailures: new Counter({ name: 'mailstream_delivery_failures_total', help: 'Failed delivery attempts', labelNames: ['sink', 'kind'] as const, registers: r }),
    emailsRetried: new Counter({ name: 'mailstream_emails_retried_total', help: 'Delivery attempts scheduled for a retry', labelNames: ['sink'] as const, registers: r }),
    emailsDeduplicated: new Counter({ name: 'mailstream_emails_deduplicated_total', help: 'Entries acknowledged without delivery because their key was already delivered', registers: r }),
    emailsDeadLettered: new Counter({ name: 'mailstream_emails_dead_lettered_total', help: 'Entries moved to the DLQ', labelNames: ['reason'] as const, registers: r }),
    deliveryDuration: new Histogram({ name: 'mailstream_delivery_duration_seconds', help: 'Time of one sink call (one batch of emails)', labelNames: ['sink'] as const, buckets: LATENCY_BUCKETS, registers: r }),
    deliveryBatchSize: new Histogram({ name: 'mailstream_delivery_batch_size', help: 'Emails handed to the sink in one call', labelNames: ['sink'] as const, buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000], registers: r }),
    unsettledOutcomes: new Gauge({ name: 'mailstream_unsettled_outcomes', help: 'Emails the sink answered whose outcome (acknowledgement, retry, dead letter) Redis has not recorded yet', registers: r }),
    settleBlocked: new Gauge({ name: 'mailstream_settle_blocked', help: '1 while Redis refuses to record outcomes this worker holds; the worker reads nothing new meanwhile', registers: r }),
    settleRefusals: new Counter({ name: 'mailstream_settle_refusals_total', help: 'Settle steps Redis refused (and the worker sent again), by kind (redis-oom, redis-readonly, redis-loading, redis-unavailable, ...)', labelNames: ['kind'] as const, registers: r }),
    endToEndLatency: new Histogram({ name: 'mailstream_end_to_end_latency_seconds', help: 'From append to the stream to delivery by the sink', labelNames: ['sink'] as const, buckets: E2E_BUCKETS, registers: r }),
    orphansClaimed: new Counter({ name: 'mailstream_orphans_claimed_total', help: 'Pending entries claimed from consumers that stopped', registers: r }),
    consumersRemoved: new Counter({ name: 'mailstream_consumers_removed_total', help: 'Dead consumers with nothing pending removed from the group', registers: r }),
    inFlight: new Gauge({ name: 'mailstream_deliveries_in_flight', help: 'Deliveries under way in this worker', registers: r }),
    blobReads: new Counter({ name: 'mailstream_blob_reads_total', help: 'Objects read from the blob store for deliveries, by result: ok (read, or let go early by the reader), missing (the store has no such object), unavailable (the store did not answer, or failed mid-read)', labelNames: ['result'] as const, registers: r }),
    blobReadBytes: new Counter({ name: 'mailstream_blob_read_bytes_total', help: 'Bytes read from the blob store for deliveries', registers: r }),
    blobReadDuration: new Histogram({ name: 'mailstream_blob_read_duration_seconds', help: 'Time of one read from the blob store, from the open to the end of the read (or the reader letting go)', buckets: LATENCY_BUCKETS, registers: r }),

    // --- stream state (both roles refresh it) ---
    streamLength: new Gauge({ name: 'mailstream_stream_length', help: 'Entries in the email stream', labelNames: ['account'] as const, registers: r }),
    groupLag: new Gauge({ name: 'mailstream_consumer_group_lag', help: 'Entries not yet read by the consumer group', labelNames: ['account', 'group'] as const, registers: r }),
    groupPending: new Gauge({ name: 'mailstream_consumer_group_pending', help: 'Entries read but not acknowledged by the group', labelNames: ['account', 'group'] as const, registers: r }),
    dlqLength: new Gauge({ name: 'mailstream_dlq_length', help: 'Entries in the dead-letter stream', labelNames: ['account'] as const, registers: r }),

    // --- both ---
    breakerState: new Gauge({ name: 'mailstream_circuit_breaker_state', help: 'Circuit breaker: 0 closed, 1 half-open, 2 open; account "*" for one shared by every account (the sink)', labelNames: ['account', 'breaker'] as const, registers: r }),
    breakerOpens: new Counter({ name: 'mailstream_circuit_breaker_opens_total', help: 'Times a circuit breaker opened', labelNames: ['account', 'breaker'] as const, registers: r }),
    redisUp: new Gauge({ name: 'mailstream_redis_up', help: '1 while Redis answers', registers: r }),
    ready: new Gauge({ name: 'mailstream_ready', help: '1 while /ready answers 200', registers: r }),
  };
  m.buildInfo.set({ role, version }, 1);
  return m;
}

export type Metrics = ReturnType<typeof createMetrics>;
