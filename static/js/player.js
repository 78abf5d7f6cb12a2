/**
 * Plays frames at a chosen FPS with several requests in flight, so the achieved FPS is bound by
 * the server's throughput, not by the round-trip time.
 *
 * The player asks for frames ahead of the one on screen (at most `lookahead` beyond it), shows
 * them in order on a clock that starts when the first frame arrives, and never shows a frame after
 * a later one. A frame that arrives after its time slot is counted late; when the one after it is
 * already due and here, it is dropped so the picture catches up instead of drifting behind the
 * clock (and the audio). Clock and timers are injected, so the logic runs in tests without waiting.
 *
 * @module player
 */

/** How far past its slot a frame may be shown before it counts as late. */
const LATE_TOLERANCE_MS = 5;
/** After this many failures in a row playback stops: the server is not going to deliver. */
const MAX_CONSECUTIVE_ERRORS = 10;

/**
 * @typedef {object} PlayerOptions
 * @property {(frameId: number) => Promise<any>} fetchFrame asks for one frame (decoded, ready to show)
 * @property {(frame: any, frameId: number) => void} present puts a frame on screen
 * @property {(frame: any) => void} [release] frees a frame that will not be shown
 * @property {(error: Error) => boolean} [isFatal] whether an error stops playback at once
 * @property {number} [lookahead] frames requested beyond the one due next (the in-flight window)
 * @property {() => number} [now] milliseconds, monotonic
 * @property {(callback: () => void, ms: number) => any} [setTimer]
 * @property {(handle: any) => void} [clearTimer]
 */

/**
 * Events: `frame` (detail `{frameId, late}`), `error` (detail `{frameId, error}`) and `stop`
 * (detail `{reason: 'stopped' | 'ended' | 'error', error?}`).
 */
export class Player extends EventTarget {
  /** @param {PlayerOptions} options */
  constructor({
    fetchFrame, present, release = () => {}, isFatal = (error) => Boolean(error.permanent), lookahead = 8,
    now = () => performance.now(), setTimer = (callback, ms) => setTimeout(callback, ms),
    clearTimer = (handle) => clearTimeout(handle),
  }) {
    super();
    Object.assign(this, { fetchFrame, present, release, isFatal, lookahead, now, setTimer, clearTimer });
    this.playing = false;
    this.run = 0;
    this.timer = null;
    this.counters = { requested: 0, shown: 0, late: 0, dropped: 0, errors: 0 };
  }

  /**
   * Start playing from `fromFrame`; a playing player restarts there.
   * @param {{fromFrame: number, frameCount: number, fps: number, loop: boolean}} options
   */
  start({ fromFrame, frameCount, fps, loop }) {
    this.halt();
    this.run += 1;
    this.playing = true;
    Object.assign(this, { fromFrame, frameCount, fps, loop });
    /** Slot k of this run shows frame (fromFrame + k), modulo frameCount when looping. */
    this.lastSlot = loop ? Infinity : frameCount - 1 - fromFrame;
    this.nextRequest = 0;
    this.nextShow = 0;
    this.consecutiveErrors = 0;
    /** @type {Map<number, {state: 'pending' | 'ready' | 'failed' | 'skipped', frame?: any, arrivedAt?: number}>} */
    this.slots = new Map();
    /** The clock: slot `k0` is due at `t0`; null until the first frame arrives. */
    this.clock = null;
    this.fill();
  }

  /** Stop; frames still on their way are released when they arrive. */
  stop(reason = 'stopped', error = undefined) {
    if (!this.playing) return;
    this.halt();
    this.dispatchEvent(new CustomEvent('stop', { detail: { reason, error } }));
  }

  /** Change the FPS while playing; the frame due next keeps its time. */
  setFps(fps) {
    this.fps = fps;
    if (this.playing && this.clock !== null) {
      this.clock = { k0: this.nextShow, t0: Math.max(this.now(), this.clock.t0) };
      this.pump();
    }
  }

  /** Turn looping on or off while playing; off ends playback after the video's last frame. */
  setLoop(loop) {
    this.loop = loop;
    if (!this.playing) return;
    this.lastSlot = loop ? Infinity : this.nextShow + (this.frameCount - 1 - this.frameIdOf(this.nextShow));
    this.pump();
  }

  /** @param {number} slot */
  frameIdOf(slot) {
    return (this.fromFrame + slot) % this.frameCount;
  }

  /** @param {number} slot */
  dueAt(slot) {
    return this.clock.t0 + ((slot - this.clock.k0) * 1000) / this.fps;
  }

  halt() {
    this.clearTimer(this.timer);
    this.timer = null;
    this.playing = false;
    if (this.slots) {
      for (const entry of this.slots.values()) if (entry.state === 'ready') this.release(entry.frame);
      this.slots.clear();
    }
  }

  /** Ask for frames up to `lookahead` slots beyond the one due next. */
  fill() {
    while (this.playing && this.nextRequest <= this.lastSlot && this.nextRequest - this.nextShow < this.lookahead) {
      const slot = this.nextRequest;
      this.nextRequest += 1;
      if (this.clock !== null && this.dueAt(slot) + LATE_TOLERANCE_MS < this.now()) {
        // Its slot is over before it could be asked for: asking would only add load.
        this.slots.set(slot, { state: 'skipped' });
        this.counters.dropped += 1;
        continue;
      }
      this.slots.set(slot, { state: 'pending' });
      this.counters.requested += 1;
      this.request(slot, this.run);
    }
  }

  async request(slot, run) {
    const frameId = this.frameIdOf(slot);
    let frame;
    try {
      frame = await this.fetchFrame(frameId);
    } catch (error) {
      if (run !== this.run || !this.playing) return;
      this.counters.errors += 1;
      this.consecutiveErrors += 1;
      this.dispatchEvent(new CustomEvent('error', { detail: { frameId, error } }));
      if (this.isFatal(error) || this.consecutiveErrors >= MAX_CONSECUTIVE_ERRORS) {
        this.stop('error', error);
        return;
      }
      const entry = this.slots.get(slot);
      if (entry !== undefined) entry.state = 'failed';
      this.pump();
      return;
    }
    const entry = run === this.run && this.playing ? this.slots.get(slot) : undefined;
    if (entry === undefined) {
      // Stopped, restarted, or dropped while on its way.
      this.release(frame);
      return;
    }
    this.consecutiveErrors = 0;
    Object.assign(entry, { state: 'ready', frame, arrivedAt: this.now() });
    this.pump();
  }

  /** Show what is due, drop what is hopelessly late, and arm the timer for the next slot. */
  pump() {
    this.clearTimer(this.timer);
    this.timer = null;
    const now = this.now();
    while (this.playing) {
      const slot = this.nextShow;
      if (slot > this.lastSlot) {
        this.stop('ended');
        return;
      }
      if (!this.slots.has(slot)) this.fill();
      const entry = this.slots.get(slot);
      if (entry === undefined) break;
      if (entry.state === 'failed' || entry.state === 'skipped') {
        this.advance();
        continue;
      }
      if (this.clock === null) {
        if (entry.state !== 'ready') break;
        this.clock = { k0: slot, t0: now };
      }
      const due = this.dueAt(slot);
      if (due > now + LATE_TOLERANCE_MS) {
        this.timer = this.setTimer(() => this.pump(), due - now);
        break;
      }
      const next = this.slots.get(slot + 1);
      const nextDueAndHere = next !== undefined && next.state === 'ready' && this.dueAt(slot + 1) <= now;
      if (entry.state === 'pending') {
        if (!nextDueAndHere) {
          // Wait for it: its arrival pumps again, and so does the next slot's time, when the next
          // frame may be here to take its place.
          const nextDue = this.dueAt(slot + 1);
          if (nextDue > now) this.timer = this.setTimer(() => this.pump(), nextDue - now);
          break;
        }
        this.counters.late += 1;
        this.counters.dropped += 1;
        this.advance();
        continue;
      }
      if (nextDueAndHere) {
        this.release(entry.frame);
        this.counters.dropped += 1;
        if (entry.arrivedAt > due + LATE_TOLERANCE_MS) this.counters.late += 1;
        this.advance();
        continue;
      }
      const late = entry.arrivedAt > due + LATE_TOLERANCE_MS;
      if (late) this.counters.late += 1;
      this.counters.shown += 1;
      this.present(entry.frame, this.frameIdOf(slot));
      this.advance();
      this.dispatchEvent(new CustomEvent('frame', { detail: { frameId: this.frameIdOf(slot), late } }));
    }
    this.fill();
  }

  advance() {
    this.slots.delete(this.nextShow);
    this.nextShow += 1;
  }
}
