/**
 * Live measurements, pure: a latency window with percentiles, and a rate meter for achieved FPS.
 *
 * @module stats
 */

/** The last `capacity` latencies, for last / p50 / p95 and the chart. */
export class LatencyWindow {
  /** @param {number} [capacity] */
  constructor(capacity = 240) {
    this.capacity = capacity;
    /** @type {number[]} oldest first */
    this.values = [];
  }

  /** @param {number} ms */
  add(ms) {
    this.values.push(ms);
    if (this.values.length > this.capacity) this.values.shift();
  }

  clear() {
    this.values.length = 0;
  }

  /** @returns {number | null} the latest latency */
  get last() {
    return this.values.length === 0 ? null : this.values[this.values.length - 1];
  }

  /**
   * The `p`-th percentile (0-100) of the window, nearest-rank; null when empty.
   * @param {number} p
   * @returns {number | null}
   */
  percentile(p) {
    if (this.values.length === 0) return null;
    const sorted = [...this.values].sort((a, b) => a - b);
    const rank = Math.ceil((p / 100) * sorted.length);
    return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
  }
}

/** Events per second over a sliding window: the achieved FPS. */
export class RateMeter {
  /**
   * @param {number} [windowMs]
   * @param {() => number} [now]
   */
  constructor(windowMs = 2000, now = () => performance.now()) {
    this.windowMs = windowMs;
    this.now = now;
    /** @type {number[]} */
    this.times = [];
  }

  /** Count one event now. */
  mark() {
    this.times.push(this.now());
    this.trim();
  }

  clear() {
    this.times.length = 0;
  }

  /** @returns {number} events per second over the window (0 with fewer than two events) */
  rate() {
    this.trim();
    if (this.times.length < 2) return 0;
    const span = this.times[this.times.length - 1] - this.times[0];
    return span > 0 ? ((this.times.length - 1) * 1000) / span : 0;
  }

  trim() {
    const oldest = this.now() - this.windowMs;
    while (this.times.length > 0 && this.times[0] < oldest) this.times.shift();
  }
}

/**
 * A byte count for people: "980 B", "12.4 KB", "3.21 MB" (powers of 1000, as network rates are).
 * @param {number} bytes
 * @returns {string}
 */
export function formatBytes(bytes) {
  if (bytes < 1000) return `${bytes} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = -1;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${value.toFixed(value < 10 ? 2 : value < 100 ? 1 : 0)} ${units[unit]}`;
}

/**
 * Milliseconds for people: "—" when unknown, one decimal below 100 ms.
 * @param {number | null | undefined} ms
 * @returns {string}
 */
export function formatMs(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  return ms < 100 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
}
