/**
 * The model package's own audio, played in sync with the frames on screen.
 *
 * The frames follow the player's clock; the audio follows the frames: every frame shown says where
 * the audio should be (frame id / model fps), and the audio is moved there when it has drifted
 * further than a frame or two (a loop back to frame 0, a seek, frames dropped by a slow server);
 * a smaller drift (the audio output starting late) is closed by playing slightly faster or slower.
 * At a speed other than the model's fps the audio plays faster or slower, pitch kept, so it stays
 * with the mouth.
 *
 * @module package-audio
 */

/** Drift beyond which the audio is moved (seeked) to where the frame on screen is. */
const MAX_DRIFT_S = 0.12;
/** A smaller drift is closed by playing up to 8 % faster or slower for about this long: inaudible,
 * where a seek would click. */
const CATCH_UP_S = 1;
const MAX_RATE_CHANGE = 0.08;
/** A seek takes time (decoding from the new place); the next one aims at most this far ahead. */
const MAX_SEEK_LEAD_S = 0.25;

/**
 * Where frame `frameId` sits in the package's audio, in seconds.
 * @param {number} frameId
 * @param {number} modelFps
 * @returns {number}
 */
export function audioTimeOf(frameId, modelFps) {
  return frameId / modelFps;
}

/** One `<audio>` element fed the package's WAV. */
export class PackageAudio {
  /** @param {HTMLAudioElement} [element] */
  constructor(element = new Audio()) {
    this.element = element;
    this.element.preload = 'auto';
    this.url = null;
    this.enabled = true;
    /** How long the last seek took, in seconds: the next one aims that far ahead. */
    this.seekLeadS = 0;
    this.seekStartedAt = null;
    element.addEventListener('seeked', () => {
      if (this.seekStartedAt === null) return;
      this.seekLeadS = Math.min(MAX_SEEK_LEAD_S, (performance.now() - this.seekStartedAt) / 1000);
      this.seekStartedAt = null;
    });
    /** @type {((error: Error) => void) | null} told when the browser refuses to play */
    this.onblocked = null;
  }

  /** Whether audio is loaded. */
  get available() {
    return this.url !== null;
  }

  /** @param {Uint8Array} wav the package's audio file */
  load(wav) {
    this.clear();
    this.url = URL.createObjectURL(new Blob([wav], { type: 'audio/wav' }));
    this.element.src = this.url;
  }

  clear() {
    this.pause();
    if (this.url !== null) {
      this.element.removeAttribute('src');
      this.element.load();
      URL.revokeObjectURL(this.url);
      this.url = null;
    }
  }

  /** @param {boolean} enabled sound on or off */
  setEnabled(enabled) {
    this.enabled = enabled;
    if (!enabled) this.pause();
  }

  /**
   * A frame is on screen: play the audio from its place at `targetFps / modelFps` speed.
   * @param {number} frameId
   * @param {number} modelFps
   * @param {number} targetFps
   */
  follow(frameId, modelFps, targetFps) {
    if (!this.available || !this.enabled) return;
    const element = this.element;
    const rate = targetFps / modelFps;
    const wanted = audioTimeOf(frameId, modelFps);
    if (Number.isFinite(element.duration) && wanted >= element.duration) {
      // Frames beyond the audio's end are silent.
      this.pause();
      return;
    }
    // While a seek is under way the position stands still; measuring drift then would seek again.
    if (element.seeking) return;
    const drift = element.currentTime - wanted;
    if (element.paused || Math.abs(drift) > MAX_DRIFT_S * rate) {
      if (Math.abs(drift) > MAX_DRIFT_S * rate) {
        element.currentTime = wanted + this.seekLeadS * rate;
        this.seekStartedAt = performance.now();
      }
      element.playbackRate = rate;
    } else {
      const change = Math.max(-MAX_RATE_CHANGE, Math.min(MAX_RATE_CHANGE, -drift / (CATCH_UP_S * rate)));
      const adjusted = rate * (1 + change);
      if (Math.abs(element.playbackRate - adjusted) > 0.005 * rate) element.playbackRate = adjusted;
    }
    if (element.paused) {
      element.play().catch((error) => {
        if (this.onblocked !== null) this.onblocked(error);
      });
    }
  }

  pause() {
    if (!this.element.paused) this.element.pause();
  }
}
