import type { BridgeMetrics } from '../metrics.js';

/** The window "recent" rates cover, and how often the counters are sampled for it. */
const WINDOW_MS = 60_000;
const SAMPLE_EVERY_MS = 10_000;

interface Sample {
  readonly at: number;
  /** Counter values by `destination outcome` and by `account`. */
  readonly deliveries: ReadonlyMap<string, number>;
  readonly received: ReadonlyMap<string, number>;
}

/** Per minute over the last minute (or since the console started, when that is shorter). */
export interface Rates {
  /** Seconds the rates cover; 0 until there are two samples. */
  readonly overSeconds: number;
  delivery(destination: string): { delivered: number; retry: number; dead: number } | undefined;
  received(account: string): number | undefined;
}

/**
 * Recent rates from the bridge's own counters, so the console shows what Prometheus would without
 * needing one: the counters are sampled every few seconds and the newest sample is compared with the
 * oldest one inside the window.
 */
export class RateSampler {
  private readonly samples: Sample[] = [];
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly metrics: BridgeMetrics,
    private readonly now: () => number = Date.now,
  ) {
    void this.sample().then((s) => this.samples.push(s));
    this.timer = setInterval(() => {
      void this.sample().then((s) => this.keep(s));
    }, SAMPLE_EVERY_MS);
    this.timer.unref();
  }

  async rates(): Promise<Rates> {
    const latest = await this.sample();
    const oldest = this.samples.find((s) => latest.at - s.at <= WINDOW_MS + SAMPLE_EVERY_MS);
    const seconds = oldest ? (latest.at - oldest.at) / 1000 : 0;
    const perMinute = (now: number | undefined, then: number | undefined) =>
      Math.max(0, (now ?? 0) - (then ?? 0)) * (60 / seconds);
    return {
      overSeconds: Math.round(seconds),
      delivery: (destination) => {
        if (!oldest || seconds < 1) return undefined;
        const rate = (outcome: string) => {
          const key = `${destination} ${outcome}`;
          return perMinute(latest.deliveries.get(key), oldest.deliveries.get(key));
        };
        return { delivered: rate('delivered'), retry: rate('retry'), dead: rate('dead') };
      },
      received: (account) =>
        !oldest || seconds < 1
          ? undefined
          : perMinute(latest.received.get(account), oldest.received.get(account)),
    };
  }

  close(): void {
    clearInterval(this.timer);
  }

  private keep(sample: Sample): void {
    this.samples.push(sample);
    while (this.samples.length > 0 && sample.at - this.samples[0]!.at > WINDOW_MS + SAMPLE_EVERY_MS) {
      this.samples.shift();
    }
  }

  private async sample(): Promise<Sample> {
    const at = this.now();
    const [deliveries, received] = await Promise.all([
      this.metrics.deliveries.get(),
      this.metrics.eventsReceived.get(),
    ]);
    const byOutcome = new Map<string, number>();
    for (const { labels, value } of deliveries.values) {
      const key = `${String(labels.destination)} ${String(labels.outcome)}`;
      byOutcome.set(key, (byOutcome.get(key) ?? 0) + value);
    }
    const byAccount = new Map<string, number>();
    for (const { labels, value } of received.values) {
      const account = String(labels.account);
      byAccount.set(account, (byAccount.get(account) ?? 0) + value);
    }
    return { at, deliveries: byOutcome, received: byAccount };
  }
}
