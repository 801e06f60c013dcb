/**
 * Prometheus metrics of one handler, with prom-client (the Node ecosystem's
 * standard library for the text format), in a registry of the handler's own
 * (two handlers in a process don't clash), and the health and readiness
 * answers that go with them. The command serves them on a listener of its
 * own (`rest_wsgi: metrics_port`), never on the API's port; an embedder
 * mounts `handler.metricsHandler` or reads `handler.metrics` (the registry).
 *
 * Labels stay bounded: a status code, a client name from the client table,
 * an outcome from a short list. Never a username, a minion id, a jid or a
 * function name. What the dispatcher holds (in flight, the master's
 * connections, bus traffic) is read when scraped, not counted per request.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ItemReport } from '../clients/context.js';
import type { TransportStats } from '../clients/netapi.js';
import type { CutReason } from './ndjson.js';

const PREFIX = 'salt_rest_wsgi_';
/** Seconds: refusals take a millisecond, synchronous jobs up to their timeouts. */
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

/** What the metrics read from the handler when scraped. */
export interface MetricsSources {
  inFlight(): number;
  /** Bytes of streamed answers' lines waiting for their readers. */
  unsentBytes?(): number;
  transport(): TransportStats;
  /** Why the master can't be used now (the 503 answers' words), or undefined. */
  notReady(): string | undefined;
}

/** An item's outcome, for its label: a few words, whatever the error. */
export function outcomeOf(status: number): string {
  if (status === 200) return 'ok';
  if (status === 401) return 'denied';
  if (status === 499) return 'abandoned';
  if (status === 503) return 'unavailable';
  if (status === 504) return 'timeout';
  if (status === 507) return 'too_large';
  return status < 500 ? 'refused' : 'error';
}

/** Node's process metrics, once per process, in a registry of their own (collectDefaultMetrics registers observers: not once per handler). */
let processRegistry: Registry | undefined;
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/** A counter whose value is read when scraped (the dispatcher counts; prom-client shows it). */
function readCounter(registry: Registry, name: string, help: string, read: () => number): Counter {
  return new Counter({
    name: PREFIX + name,
    help,
    registers: [registry],
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}

function readGauge(registry: Registry, name: string, help: string, read: () => number): Gauge {
  return new Gauge({
    name: PREFIX + name,
    help,
    registers: [registry],
    collect() {
      this.set(read());
    },
  });
}

export class HandlerMetrics {
  readonly registry = new Registry();
  private readonly responses: Counter<'status'>;
  private readonly byStatus = new Map<number, Counter.Internal>();
  private readonly duration: Histogram;
  private readonly answerBytes: Counter;
  private readonly shedCount: Counter;
  private readonly throttledCount: Counter;
  private readonly items: Counter<'client' | 'outcome'>;
  private readonly minionReturns: Counter;
  private readonly minionsFalse: Counter;
  private readonly streamsCut: Counter<'reason'>;
  /** Lengths of answers sent without Content-Length (large ones, in pieces). */
  private readonly pieceLengths = new WeakMap<ServerResponse, number>();

  constructor(sources: MetricsSources) {
    const r = this.registry;
    const registers = [r];
    this.responses = new Counter({
      name: `${PREFIX}http_responses_total`,
      help: 'HTTP answers, by status',
      labelNames: ['status'],
      registers,
    });
    this.duration = new Histogram({
      name: `${PREFIX}http_request_duration_seconds`,
      help: 'From the request to the end of its answer',
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.answerBytes = new Counter({ name: `${PREFIX}http_response_bytes_total`, help: 'Bytes of answer bodies sent', registers });
    this.shedCount = new Counter({
      name: `${PREFIX}http_requests_shed_total`,
      help: 'POSTs refused with 503 past max_in_flight',
      registers,
    });
    this.throttledCount = new Counter({
      name: `${PREFIX}http_requests_throttled_total`,
      help: 'POSTs refused with 429 after failed logins',
      registers,
    });
    this.items = new Counter({
      name: `${PREFIX}lowstate_items_total`,
      help: 'Lowstate items that ended, by client and outcome',
      labelNames: ['client', 'outcome'],
      registers,
    });
    this.minionReturns = new Counter({
      name: `${PREFIX}minion_returns_total`,
      help: 'Minion returns collected for synchronous jobs',
      registers,
    });
    this.minionsFalse = new Counter({
      name: `${PREFIX}minions_missing_total`,
      help: 'Targeted minions answered false or "did not return"',
      registers,
    });
    this.streamsCut = new Counter({
      name: `${PREFIX}ndjson_answers_cut_total`,
      help: 'Streamed answers cut short: reader_behind (ndjson_max_unsent_bytes), send_timeout (send_timeout)',
      labelNames: ['reason'],
      registers,
    });
    readGauge(r, 'http_requests_in_flight', 'POSTs being handled', () => sources.inFlight());
    readGauge(r, 'ndjson_unsent_bytes', "Bytes of streamed answers' lines waiting for their readers", () => sources.unsentBytes?.() ?? 0);
    const t = () => sources.transport();
    readGauge(r, 'master_request_channel_connected', "1 while the master's request port is connected", () => Number(t().channelConnected));
    readCounter(r, 'master_request_channel_reconnects_total', "Reconnections to the master's request port", () =>
      Math.max(0, t().channelConnects - 1),
    );
    readGauge(r, 'master_event_bus_connected', "1 while the master's event bus is connected", () => Number(t().busConnected));
    readCounter(r, 'master_event_bus_reconnects_total', "Reconnections to the master's event bus", () => Math.max(0, t().busConnects - 1));
    readCounter(r, 'master_event_bus_events_total', 'Events read from the event bus', () => t().busEvents);
    readCounter(r, 'master_event_bus_bytes_total', 'Bytes read from the event bus', () => t().busBytes);
    readGauge(r, 'master_ready', '1 when the request port and the event bus are both connected (/readyz)', () =>
      Number(!sources.notReady()),
    );
  }

  /** Count the request's answer when its connection is done with it. */
  watch(res: ServerResponse): void {
    const start = process.hrtime.bigint();
    res.once('close', () => {
      const status = res.writableFinished ? res.statusCode : 499;
      let counter = this.byStatus.get(status);
      if (!counter) {
        counter = this.responses.labels(String(status));
        this.byStatus.set(status, counter);
      }
      counter.inc();
      this.duration.observe(Number(process.hrtime.bigint() - start) / 1e9);
      const length = Number(res.getHeader('content-length') ?? this.pieceLengths.get(res) ?? 0);
      if (res.writableFinished && length > 0) this.answerBytes.inc(length);
    });
  }

  /** An answer written in pieces: its length (no Content-Length to read it from). */
  answered(res: ServerResponse, length: number): void {
    if (res.getHeader('content-length') === undefined) this.pieceLengths.set(res, length);
  }

  /** A POST refused at the door: 429 (`throttled`) or 503 past max_in_flight. */
  refused(throttled: boolean): void {
    (throttled ? this.throttledCount : this.shedCount).inc();
  }

  /** An item that ended with `status`; its report's minions. */
  item(client: string, status: number, report: ItemReport): void {
    this.items.labels(client, outcomeOf(status)).inc();
    if (report.returned) this.minionReturns.inc(report.returned);
    if (report.missing) this.minionsFalse.inc(report.missing);
  }

  /** A streamed answer cut short, for one of CutReason's two reasons (a bounded label). */
  streamCut(reason: CutReason): void {
    this.streamsCut.labels(reason).inc();
  }

  /** The text format: the handler's metrics, then Node's process metrics. */
  async text(): Promise<string> {
    const [own, proc] = await Promise.all([this.registry.metrics(), processMetrics().metrics()]);
    return `${own}\n${proc}`;
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/**
 * `GET /metrics`, `/healthz` (200 while the process serves) and `/readyz`
 * (200 when the master's request port and event bus are connected, else 503
 * and the reason on one line); anything else 404. For a listener of its own.
 */
export function metricsRequestHandler(
  metrics: HandlerMetrics,
  notReady: () => string | undefined,
): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const path = (req.url ?? '/').split('?', 1)[0];
    const plain = (status: number, body: string) => {
      res.writeHead(status, {
        'Content-Type': 'text/plain; charset=utf-8',
        'Content-Length': Buffer.byteLength(body),
        'Cache-Control': 'no-store',
      });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return plain(405, 'GET only\n');
    if (path === '/healthz') return plain(200, 'ok\n');
    if (path === '/readyz') {
      const reason = notReady();
      return reason ? plain(503, `${reason}\n`) : plain(200, 'ready\n');
    }
    if (path !== '/metrics') return plain(404, 'not found: /metrics, /healthz, /readyz\n');
    metrics.text().then(
      (text) => {
        res.writeHead(200, { 'Content-Type': metrics.contentType, 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : text);
      },
      (err: unknown) => plain(500, `metrics failed: ${(err as Error)?.message ?? String(err)}\n`.replace(/[\r\n]+(?=.)/g, ' ')),
    );
  };
}
