/**
 * The microphone as a stream of PCM16 mono 16 kHz chunks, for a live speaking session.
 *
 * Capture runs in an AudioWorklet (`mic-worklet.js`) at the device's rate; `pcm.js` turns it into
 * what the server takes. Every failure becomes a MicrophoneError whose message a person can act on.
 *
 * @module microphone
 */

import { SAMPLE_RATE } from './protocol.js';
import { floatToPcm16, Resampler } from './pcm.js';

/** Audio is sent in chunks of this many milliseconds: small enough for a quick mouth, few messages. */
export const CHUNK_MS = 100;

/** Why the microphone could not be used, in words for the page. */
export class MicrophoneError extends Error {
  constructor(message) {
    super(message);
    this.name = 'MicrophoneError';
  }
}

/**
 * The message for a getUserMedia failure.
 * @param {Error} error
 * @returns {string}
 */
export function explainMicrophoneError(error) {
  switch (error?.name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return 'Microphone permission was refused. Allow the microphone for this site in the browser and try again.';
    case 'NotFoundError':
    case 'OverconstrainedError':
      return 'No microphone was found. Connect one and try again.';
    case 'NotReadableError':
    case 'AbortError':
      return 'The microphone is in use by another application or could not be started.';
    default:
      return `The microphone could not be opened: ${error?.message ?? error}`;
  }
}

/** An open microphone; `onchunk` receives Int16Array chunks of CHUNK_MS at 16 kHz. */
export class Microphone {
  /**
   * @param {(chunk: Int16Array) => void} onchunk
   * @returns {Promise<Microphone>}
   * @throws {MicrophoneError}
   */
  static async open(onchunk) {
    if (!window.isSecureContext) {
      throw new MicrophoneError('The microphone needs a secure page: open the client over HTTPS (or on localhost).');
    }
    if (!navigator.mediaDevices?.getUserMedia || typeof AudioWorkletNode === 'undefined') {
      throw new MicrophoneError('This browser cannot capture the microphone.');
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true },
      });
    } catch (error) {
      throw new MicrophoneError(explainMicrophoneError(error));
    }
    const context = new AudioContext();
    try {
      await context.audioWorklet.addModule(new URL('./mic-worklet.js', import.meta.url));
      const source = context.createMediaStreamSource(stream);
      const node = new AudioWorkletNode(context, 'pcm-capture');
      // The node writes no output; connecting it keeps the graph pulling its input.
      source.connect(node).connect(context.destination);
      await context.resume();
      return new Microphone(stream, context, node, onchunk);
    } catch (error) {
      stream.getTracks().forEach((track) => track.stop());
      await context.close();
      throw new MicrophoneError(`The microphone could not be started: ${error.message}`);
    }
  }

  constructor(stream, context, node, onchunk) {
    this.stream = stream;
    this.context = context;
    this.node = node;
    this.resampler = new Resampler(context.sampleRate, SAMPLE_RATE);
    this.chunkSamples = (SAMPLE_RATE * CHUNK_MS) / 1000;
    this.buffer = new Int16Array(this.chunkSamples);
    this.filled = 0;
    this.label = stream.getAudioTracks()[0]?.label || 'microphone';
    node.port.onmessage = (event) => {
      const samples = floatToPcm16(this.resampler.push(event.data));
      let offset = 0;
      while (offset < samples.length) {
        const take = Math.min(samples.length - offset, this.chunkSamples - this.filled);
        this.buffer.set(samples.subarray(offset, offset + take), this.filled);
        this.filled += take;
        offset += take;
        if (this.filled === this.chunkSamples) {
          onchunk(this.buffer.slice());
          this.filled = 0;
        }
      }
    };
  }

  /** Stop capturing and let the device go. */
  async close() {
    this.node.port.onmessage = null;
    this.stream.getTracks().forEach((track) => track.stop());
    await this.context.close();
  }
}
