/** Extra log fields for a line that stands for several occurrences. */
export interface Repeats {
  /** Occurrences this line stands for (itself and the ones counted since the previous line). */
  repeated?: number;
}

interface Window {
  repeated: number;
  latest?: (repeats: Repeats) => void;
}

/**
 * Collapses a flood of the same log line. Per key, the first occurrence is written at once; repeats
 * within `intervalMs` are only counted, and when the interval ends the latest of them is written with
 * `repeated: N`. A key quiet for a whole interval is forgotten, so its next occurrence is written at
 * once again. At most two lines per key per interval, whatever the rate.
 */
export class LogThrottle {
  private readonly windows = new Map<string, Window>();

  /** 5 s: a flood costs two lines per cause per 5 s; a new cause still shows at once. */
  constructor(private readonly intervalMs = 5_000) {}

  /** `write` logs the line, adding the given fields (empty for a first occurrence). */
  log(key: string, write: (repeats: Repeats) => void): void {
    const window = this.windows.get(key);
    if (window) {
      window.repeated++;
      window.latest = write;
      return;
    }
    write({});
    this.open(key);
  }

  private open(key: string): void {
    this.windows.set(key, { repeated: 0 });
    setTimeout(() => this.close(key), this.intervalMs).unref();
  }

  private close(key: string): void {
    const window = this.windows.get(key);
    this.windows.delete(key);
    if (!window?.latest) return;
    window.latest({ repeated: window.repeated });
    this.open(key);
  }
}
