/**
 * Video output on the page: the model's base video and a session's face-region chunks, decoded with
 * WebCodecs and composited on the canvas (docs/protocol.md, "Video output").
 *
 * The base video is fetched once per model (an immutable, cacheable file) and decoded in step with
 * the session: each chunk names its base frame, which is decoded from the key frame before it, a
 * few frames ahead at most. Each decoded crop is drawn over its base frame at its window, then both
 * are closed, so memory stays bounded whatever the session's length. A gap in the chunks' sequence
 * numbers or a decoder error asks the server for a key frame and skips chunks until it comes.
 *
 * @module video
 */

import { VideoCodec } from './protocol.js';

/** The WebCodecs codec string of each codec as the server encodes it. */
export const CODEC_STRINGS = Object.freeze({
  [VideoCodec.H264]: 'avc1.42e01f',
  [VideoCodec.VP8]: 'vp8',
  [VideoCodec.VP9]: 'vp09.00.10.08',
  [VideoCodec.AV1]: 'av01.0.04M.08',
});
export const CODEC_NAMES = Object.freeze({
  [VideoCodec.H264]: 'H.264', [VideoCodec.VP8]: 'VP8', [VideoCodec.VP9]: 'VP9', [VideoCodec.AV1]: 'AV1',
});
/** The base video URL's spelling of each codec. */
const URL_NAMES = Object.freeze({
  [VideoCodec.H264]: 'h264', [VideoCodec.VP8]: 'vp8', [VideoCodec.VP9]: 'vp9', [VideoCodec.AV1]: 'av1',
});
/** Base frames decoded beyond the one wanted; each holds a decoded 720p picture until closed. */
const BASE_AHEAD = 6;
/** A picture later than this behind the clock restarts the clock at it (rather than rushing). */
const MAX_LATE_MS = 100;

/**
 * The codecs this browser decodes, in the page's order of preference (the server picks among them).
 * @param {any} [decoder] the VideoDecoder class (tests pass a double)
 * @returns {Promise<number[]>} VideoCodec values; empty without WebCodecs
 */
export async function decodableCodecs(decoder = globalThis.VideoDecoder) {
  if (typeof decoder?.isConfigSupported !== 'function') return [];
  const found = [];
  for (const [codec, codecString] of Object.entries(CODEC_STRINGS)) {
    try {
      const { supported } = await decoder.isConfigSupported({ codec: codecString, codedWidth: 1280, codedHeight: 720 });
      if (supported) found.push(Number(codec));
    } catch {
      // An unknown codec string is "not supported" in some browsers and a TypeError in others.
    }
  }
  return found;
}

/** @param {string} modelName @param {number} codec */
export function baseVideoUrl(modelName, codec) {
  return `/models/${encodeURIComponent(modelName)}/base-video?codec=${URL_NAMES[codec]}`;
}

/**
 * @typedef {object} BaseVideoFile
 * @property {number} codec
 * @property {string} codecString
 * @property {number} width
 * @property {number} height
 * @property {number} fps
 * @property {{key: boolean, data: Uint8Array}[]} chunks one per frame, in order
 */

/**
 * Parse a base video file (docs/protocol.md, "Base video").
 * @param {ArrayBuffer | Uint8Array} data
 * @returns {BaseVideoFile}
 */
export function parseBaseVideo(data) {
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 20 || String.fromCharCode(...bytes.subarray(0, 4)) !== 'LSBV' || bytes[4] !== 1) {
    throw new Error('not a base video file (LSBV version 1)');
  }
  const textEnd = 20 + bytes[6];
  const count = view.getUint32(16, true);
  const chunks = [];
  let offset = textEnd;
  for (let index = 0; index < count; index += 1) {
    if (offset + 5 > bytes.length) throw new Error(`base video cut short at frame ${index}`);
    const size = view.getUint32(offset, true);
    const key = Boolean(bytes[offset + 4] & 1);
    chunks.push({ key, data: bytes.subarray(offset + 5, offset + 5 + size) });
    offset += 5 + size;
  }
  if (offset !== bytes.length) throw new Error('base video has bytes after its last frame');
  return {
    codec: bytes[5],
    codecString: String.fromCharCode(...bytes.subarray(20, textEnd)),
    width: view.getUint16(8, true),
    height: view.getUint16(10, true),
    fps: view.getFloat32(12, true),
    chunks,
  };
}

/** The base video of one model and codec, fetched through the HTTP cache. */
export async function fetchBaseVideo(modelName, codec, fetcher = fetch) {
  const reply = await fetcher(baseVideoUrl(modelName, codec));
  if (!reply.ok) throw new Error(`base video: HTTP ${reply.status}`);
  const bytes = new Uint8Array(await reply.arrayBuffer());
  return { file: parseBaseVideo(bytes), size: bytes.length };
}

/** Base frames by frame id, decoded on demand from the key frame before them, a few ahead. */
export class BaseFrames {
  /** @param {BaseVideoFile} file @param {any} [Decoder] */
  constructor(file, Decoder = globalThis.VideoDecoder) {
    this.file = file;
    this.Decoder = Decoder;
    /** @type {Map<number, VideoFrame>} decoded frames nobody took yet */
    this.ready = new Map();
    /** @type {Map<number, {resolve: (frame: VideoFrame) => void, reject: (error: Error) => void}>} */
    this.waiting = new Map();
    this.decoder = null;
    this.next = 0;
  }

  /**
   * Base frame `frameId`; the caller closes it.
   * @param {number} frameId
   * @returns {Promise<VideoFrame>}
   */
  frame(frameId) {
    for (const [id, frame] of this.ready) {
      if (id < frameId) {
        frame.close();
        this.ready.delete(id);
      }
    }
    const held = this.ready.get(frameId);
    if (held !== undefined) {
      this.ready.delete(frameId);
      this.feed(frameId + BASE_AHEAD);
      return Promise.resolve(held);
    }
    const promise = new Promise((resolve, reject) => this.waiting.set(frameId, { resolve, reject }));
    const keyframeDistance = Math.ceil(this.file.fps) * 2;
    if (this.decoder === null || frameId < this.next - BASE_AHEAD - 1 || frameId > this.next + keyframeDistance) {
      this.restart(frameId);
    }
    this.feed(frameId + BASE_AHEAD);
    return promise;
  }

  /** A new decoder from the key frame at or before `frameId`. */
  restart(frameId) {
    this.decoder?.close();
    for (const frame of this.ready.values()) frame.close();
    this.ready.clear();
    let start = Math.min(frameId, this.file.chunks.length - 1);
    while (start > 0 && !this.file.chunks[start].key) start -= 1;
    this.next = start;
    const decoder = new this.Decoder({
      output: (frame) => this.output(frame),
      error: (error) => {
        for (const { reject } of this.waiting.values()) reject(error);
        this.waiting.clear();
        if (this.decoder === decoder) this.decoder = null;
      },
    });
    decoder.configure({ codec: this.file.codecString, codedWidth: this.file.width, codedHeight: this.file.height });
    this.decoder = decoder;
  }

  feed(until) {
    const last = Math.min(until, this.file.chunks.length - 1);
    for (; this.next <= last && this.decoder !== null; this.next += 1) {
      const { key, data } = this.file.chunks[this.next];
      const timestamp = Math.round((this.next * 1e6) / this.file.fps);
      this.decoder.decode(new EncodedVideoChunk({ type: key ? 'key' : 'delta', timestamp, data }));
    }
  }

  output(frame) {
    const id = Math.round((frame.timestamp * this.file.fps) / 1e6);
    const waiter = this.waiting.get(id);
    if (waiter !== undefined) {
      this.waiting.delete(id);
      waiter.resolve(frame);
    } else if (this.waiting.size > 0 && id < Math.min(...this.waiting.keys())) {
      frame.close(); // decoded only to reach a later frame
    } else {
      this.ready.get(id)?.close();
      this.ready.set(id, frame);
    }
  }

  close() {
    this.decoder?.close();
    this.decoder = null;
    for (const frame of this.ready.values()) frame.close();
    this.ready.clear();
    for (const { reject } of this.waiting.values()) reject(new Error('base video closed'));
    this.waiting.clear();
  }
}

/**
 * Plays one video session: decodes its chunks, waits for each one's base frame and hands both to
 * `present`, in order. Events: `keyframe_request` (after a lost chunk or a decoder error).
 * Playback and the live microphone mode both use it; only playback paces the pictures.
 */
export class VideoSessionPlayer extends EventTarget {
  /**
   * @param {object} options
   * @param {import('./connection.js').SpeakSession} options.session
   * @param {BaseFrames} options.base
   * @param {(crop: VideoFrame, base: VideoFrame, chunk: any) => void} options.present draws; closes nothing
   * @param {boolean} [options.paced] hold each picture until its time on the session's clock (playback,
   *   whose chunks come in bursts); false shows each one once decoded (live, where waiting adds latency)
   * @param {any} [options.Decoder]
   * @param {() => number} [options.now] milliseconds, monotonic
   * @param {(ms: number) => Promise<void>} [options.sleep]
   */
  constructor({
    session, base, present, paced = true, Decoder = globalThis.VideoDecoder, now = () => performance.now(),
    sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); }),
  }) {
    super();
    Object.assign(this, { session, base, present, paced, Decoder, now, sleep });
    /** The clock: the picture of session time `clock.mediaMs` is due at `clock.at`; null until the first. */
    this.clock = null;
    this.decoder = null;
    this.config = null;
    this.lastSequence = null;
    this.waitingForKey = true;
    /** Chunks decoding, by timestamp (their sequence number). */
    this.pending = new Map();
    this.chain = Promise.resolve();
    this.counters = { chunks: 0, shown: 0, skipped: 0, keyFrameRequests: 0 };
    session.addEventListener('video_config', (event) => this.configure(event.detail));
    session.addEventListener('video_chunk', (event) => this.chunk(event.detail));
  }

  configure(config) {
    this.config = config;
    this.decoder?.close();
    const decoder = new this.Decoder({
      output: (frame) => this.output(frame),
      error: () => {
        if (this.decoder === decoder) this.decoder = null;
        this.lost();
      },
    });
    // Each chunk's picture is wanted at once: a decoder may otherwise hold it until more chunks come.
    const options = {
      codec: config.codecString, codedWidth: config.width, codedHeight: config.height, optimizeForLatency: true,
    };
    if (config.description.length) options.description = config.description;
    decoder.configure(options);
    this.decoder = decoder;
    this.waitingForKey = true;
  }

  chunk(chunk) {
    this.counters.chunks += 1;
    const gap = this.lastSequence !== null && chunk.sequence !== this.lastSequence + 1;
    this.lastSequence = chunk.sequence;
    if (gap && !chunk.keyFrame) this.lost();
    if (this.waitingForKey && !chunk.keyFrame) {
      this.counters.skipped += 1;
      this.session.grant(1);
      return;
    }
    if (this.decoder === null) {
      this.counters.skipped += 1;
      this.session.grant(1);
      return;
    }
    this.waitingForKey = false;
    this.pending.set(chunk.sequence, chunk);
    this.decoder.decode(new EncodedVideoChunk({
      type: chunk.keyFrame ? 'key' : 'delta', timestamp: chunk.sequence, data: chunk.data,
    }));
  }

  /** A chunk is missing or undecodable: skip to the next key frame, which the server sends now. */
  lost() {
    if (this.waitingForKey) return;
    this.waitingForKey = true;
    this.counters.keyFrameRequests += 1;
    this.session.requestKeyFrame();
    this.dispatchEvent(new CustomEvent('keyframe_request'));
  }

  output(crop) {
    const chunk = this.pending.get(crop.timestamp);
    this.pending.delete(crop.timestamp);
    if (chunk === undefined) {
      crop.close();
      return;
    }
    // Base frames arrive asynchronously; the chain keeps the pictures in the order of the chunks.
    const base = this.base.frame(chunk.frameId);
    base.catch(() => {}); // handled in the chain; a session stopped meanwhile never reads it
    this.chain = this.chain.then(async () => {
      let picture = null;
      try {
        picture = await base;
        if (this.paced) await this.due(chunk.audioTimeMs);
        this.present(crop, picture, chunk);
        this.counters.shown += 1;
      } finally {
        crop.close();
        picture?.close();
        this.session.grant(1);
      }
    }).catch((error) => this.dispatchEvent(new CustomEvent('error', { detail: error })));
  }

  /** Wait until the picture of session time `mediaMs` is due: chunks come in bursts over a busy
   * network, pictures leave at the session's pace. */
  async due(mediaMs) {
    const now = this.now();
    if (this.clock === null || now - (this.clock.at + mediaMs - this.clock.mediaMs) > MAX_LATE_MS) {
      this.clock = { at: now, mediaMs };
      return;
    }
    const wait = this.clock.at + mediaMs - this.clock.mediaMs - now;
    if (wait > 0) await this.sleep(wait);
  }

  close() {
    this.decoder?.close();
    this.decoder = null;
    this.pending.clear();
  }
}
