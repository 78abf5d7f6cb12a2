/**
 * Microphone samples to what the server takes: PCM16 mono at 16 kHz. Pure.
 *
 * @module pcm
 */

/**
 * Float samples in [-1, 1] to PCM16, clipping what is outside.
 * @param {Float32Array} samples
 * @returns {Int16Array}
 */
export function floatToPcm16(samples) {
  const out = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i += 1) {
    const clipped = Math.max(-1, Math.min(1, samples[i]));
    out[i] = Math.round(clipped < 0 ? clipped * 0x8000 : clipped * 0x7fff);
  }
  return out;
}

/**
 * A streaming resampler: blocks at `fromRate` in, blocks at `toRate` out, with no seam between
 * blocks. Downsampling averages the input samples each output sample covers (a box filter, which
 * keeps most of what lies above the new Nyquist frequency out); upsampling interpolates linearly.
 * Good enough to drive mouth shapes; not a mastering-grade filter.
 */
export class Resampler {
  /**
   * @param {number} fromRate
   * @param {number} toRate
   */
  constructor(fromRate, toRate) {
    if (!(fromRate > 0 && toRate > 0)) throw new RangeError('sample rates must be positive');
    this.step = fromRate / toRate;
    /** Input samples not consumed yet, and the position (in them) of the next output sample. */
    this.pending = new Float32Array(0);
    this.position = 0;
  }

  /**
   * @param {Float32Array} block
   * @returns {Float32Array} the output samples this block completes
   */
  push(block) {
    const input = new Float32Array(this.pending.length + block.length);
    input.set(this.pending);
    input.set(block, this.pending.length);
    const out = [];
    const step = this.step;
    let position = this.position;
    if (step > 1) {
      // Output sample n covers input [position, position + step).
      while (position + step <= input.length) {
        const start = Math.floor(position);
        const end = Math.floor(position + step);
        let sum = 0;
        for (let i = start; i < end; i += 1) sum += input[i];
        out.push(sum / (end - start));
        position += step;
      }
    } else {
      while (position + 1 < input.length) {
        const i = Math.floor(position);
        const fraction = position - i;
        out.push(input[i] * (1 - fraction) + input[i + 1] * fraction);
        position += step;
      }
    }
    const consumed = Math.floor(position);
    this.pending = input.slice(consumed);
    this.position = position - consumed;
    return Float32Array.from(out);
  }
}
