/**
 * Frames onto the canvas: a full frame as it is, or a face crop drawn at its bounds over the model's
 * unmodified base frame, which the page fetches once per frame id and keeps (as JPEG bytes, within a
 * byte budget) for the next loop.
 *
 * @module render
 */

/**
 * Decode a JPEG off the main thread.
 * @param {Uint8Array} jpeg
 * @returns {Promise<ImageBitmap>}
 */
export function decodeJpeg(jpeg) {
  return createImageBitmap(new Blob([jpeg], { type: 'image/jpeg' }));
}

/**
 * @typedef {object} DecodedFrame  a frame ready to draw
 * @property {number} frameId
 * @property {ImageBitmap} image the full frame, or the face crop
 * @property {ImageBitmap | null} base the base frame under a face crop; null for full frames
 * @property {{x1: number, y1: number, x2: number, y2: number} | null} bounds where the crop goes
 */

/** Draws decoded frames on one canvas, sized to the model's frames. */
export class FrameRenderer {
  /** @param {HTMLCanvasElement} canvas */
  constructor(canvas) {
    this.canvas = canvas;
    this.context = canvas.getContext('2d', { alpha: false });
  }

  /** @param {number} width @param {number} height */
  setSize(width, height) {
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
    }
  }

  /** @param {DecodedFrame} frame */
  draw(frame) {
    const { width, height } = this.canvas;
    if (frame.base !== null && frame.bounds !== null) {
      const { x1, y1, x2, y2 } = frame.bounds;
      this.context.drawImage(frame.base, 0, 0, width, height);
      this.context.drawImage(frame.image, x1, y1, x2 - x1, y2 - y1);
    } else {
      this.context.drawImage(frame.image, 0, 0, width, height);
    }
  }
}

/**
 * Free a decoded frame's bitmaps (they hold decoded pixels until closed).
 * @param {DecodedFrame} frame
 */
export function releaseFrame(frame) {
  frame.image.close();
  frame.base?.close();
}

/** Base frames as JPEG bytes by frame id, least recently used first out beyond `maxBytes`. */
export class BaseFrameCache {
  /**
   * @param {(frameId: number) => Promise<Uint8Array>} load fetches one base frame's JPEG
   * @param {number} [maxBytes]
   */
  constructor(load, maxBytes = 48_000_000) {
    this.load = load;
    this.maxBytes = maxBytes;
    this.bytes = 0;
    /** @type {Map<number, Promise<Uint8Array>>} insertion order is recency */
    this.entries = new Map();
    this.sizes = new Map();
  }

  /**
   * The base frame's JPEG; concurrent calls for one frame share one request.
   * @param {number} frameId
   * @returns {Promise<Uint8Array>}
   */
  get(frameId) {
    let entry = this.entries.get(frameId);
    if (entry !== undefined) {
      this.entries.delete(frameId);
      this.entries.set(frameId, entry);
      return entry;
    }
    entry = this.load(frameId).then(
      (jpeg) => {
        if (this.entries.get(frameId) === entry) {
          this.sizes.set(frameId, jpeg.length);
          this.bytes += jpeg.length;
          this.evict();
        }
        return jpeg;
      },
      (error) => {
        // A failure is not cached: the next loop asks again.
        if (this.entries.get(frameId) === entry) this.entries.delete(frameId);
        throw error;
      },
    );
    this.entries.set(frameId, entry);
    return entry;
  }

  clear() {
    this.entries.clear();
    this.sizes.clear();
    this.bytes = 0;
  }

  evict() {
    for (const frameId of this.entries.keys()) {
      if (this.bytes <= this.maxBytes) break;
      const size = this.sizes.get(frameId);
      if (size === undefined) continue; // still loading
      this.entries.delete(frameId);
      this.sizes.delete(frameId);
      this.bytes -= size;
    }
  }
}
