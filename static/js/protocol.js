/**
 * The proxy's WebSocket protocols, in the browser: the seed's v1 binary request, the JSON text
 * messages and the `lipsync.v2` binary protocol, as docs/protocol.md describes them byte by byte.
 *
 * Pure: plain values in, bytes or text out, and back. No sockets here; `connection.js` moves what
 * this module makes. The encoders refuse (RangeError / TypeError) anything the proxy would refuse,
 * and `decodeServerMessage` throws ProtocolError for anything that is not a valid server message,
 * with the same rules as the proxy's own Python codec (`lipsync_protocol.v2`).
 *
 * @module protocol
 */

/** The subprotocol a client offers to speak v2. */
export const SUBPROTOCOL_V2 = 'lipsync.v2';
/** The first byte of every v2 message. */
export const VERSION = 2;
/** Every v2 message starts with `u8 version | u8 type | u16 flags | u32 request_id`. */
export const HEADER_SIZE = 8;

/** v2 message types: client-to-server types have the high bit clear, server-to-client types set. */
export const MessageType = Object.freeze({
  INFER: 0x01,
  CANCEL: 0x02,
  SESSION_START: 0x10,
  SESSION_AUDIO: 0x11,
  SESSION_CONTROL: 0x12,
  CREDIT: 0x13,
  KEY_FRAME: 0x14,
  ERROR: 0x80,
  FRAME: 0x81,
  SESSION_FRAME: 0x90,
  SESSION_END: 0x91,
  VIDEO_CONFIG: 0x92,
  VIDEO_CHUNK: 0x93,
});

/** Flag bit of a SESSION_FRAME: the frame that ends an utterance. */
export const FLAG_END_OF_UTTERANCE = 0x0001;
/** SESSION_START flags: video output (a codec list follows the traceparent); play the model's audio. */
export const FLAG_VIDEO = 0x0001;
export const FLAG_PLAY = 0x0002;
/** VIDEO_CHUNK flags: a key frame; the chunk that ends an utterance. */
export const FLAG_KEY_FRAME = 0x0001;
export const FLAG_CHUNK_END_OF_UTTERANCE = 0x0002;
/** Video codecs by name; the value is the v2 byte (the proto's VideoCodec number). */
export const VideoCodec = Object.freeze({ H264: 1, VP8: 2, VP9: 3, AV1: 4 });
export const VIDEO_CONFIG_FIXED_SIZE = 14;
export const VIDEO_CHUNK_FIXED_SIZE = 40;

/** Output modes by their JSON spelling; the value is the v2 byte (the proto's OutputMode number). */
export const OutputMode = Object.freeze({ full_frame: 1, face_crop: 2 });

/** SESSION_CONTROL actions (the proto's SpeakControl.Action numbers). */
export const SessionAction = Object.freeze({ INTERRUPT: 1, END: 2 });

/** gRPC status names by number (grpc/status.h): JSON carries the name, v2 the number. */
export const STATUS_NAMES = Object.freeze([
  'OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND',
  'ALREADY_EXISTS', 'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED',
  'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED',
]);

/** Live audio is PCM16 little-endian mono at this rate, as the server requires. */
export const SAMPLE_RATE = 16000;
export const MAX_FRAME_ID = 2 ** 31 - 1;
export const MAX_REQUEST_ID = 2 ** 32 - 1;
export const MAX_MODEL_NAME_BYTES = 255;
export const MAX_TRACEPARENT_LENGTH = 255;
/** An INFER audio window and a SESSION_AUDIO chunk are at most 2 s of PCM16 at 16 kHz. */
export const MAX_AUDIO_BYTES = 64000;
export const MAX_ERROR_TEXT_BYTES = 1024;
export const MAX_JPEG_QUALITY = 100;
/** The INFER `center_sample` that means "the middle of the window" (and "no audio"). */
export const CENTER_DEFAULT = -1;
/** Fixed parts (header included) of the server's frame messages; the JPEG follows to the end. */
export const FRAME_FIXED_SIZE = 59;
export const SESSION_FRAME_FIXED_SIZE = 71;

const INFER_FIXED_SIZE = 20;
const SESSION_START_FIXED_SIZE = 20;
const STATUS_FIXED_SIZE = 9;

const utf8 = new TextEncoder();
// Kept BOM: a text starting with U+FEFF means that character, as in the proxy's own decoder.
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** A server message that breaks the protocol's rules. */
export class ProtocolError extends Error {
  /**
   * @param {string} message what is wrong
   * @param {number | null} requestId the message's request id, once its header could be read
   */
  constructor(message, requestId = null) {
    super(message);
    this.name = 'ProtocolError';
    this.requestId = requestId;
  }
}

// --- v1: the seed's binary request -------------------------------------------------------------

/**
 * The seed's binary request: `[u8 name_len][name, UTF-8][u32 frame_id LE]`.
 * The reply is the bare JPEG of the full frame, or a JSON text error.
 * @param {string} modelName
 * @param {number} frameId
 * @returns {Uint8Array}
 */
export function encodeV1Request(modelName, frameId) {
  const name = encodeModelName(modelName);
  checkFrameId(frameId, 'frameId');
  const bytes = new Uint8Array(1 + name.length + 4);
  bytes[0] = name.length;
  bytes.set(name, 1);
  new DataView(bytes.buffer).setUint32(1 + name.length, frameId, true);
  return bytes;
}

// --- v2 client messages ------------------------------------------------------------------------

/**
 * INFER: one lip-synced frame, answered by one FRAME or one ERROR with the same request id.
 * @param {object} request
 * @param {number} request.requestId 1 ... 2^32 - 1, unique among this connection's open requests
 * @param {string} request.modelName
 * @param {number} request.frameId
 * @param {'full_frame' | 'face_crop'} [request.outputMode]
 * @param {number} [request.jpegQuality] 1-100, or 0 for the server's default
 * @param {Int16Array | null} [request.audio] PCM16 mono 16 kHz window that drives the mouth
 * @param {number | null} [request.centerSample] the window's sample at the frame's instant (null: middle)
 * @param {string | null} [request.traceparent] a W3C traceparent the request's trace continues
 * @returns {Uint8Array}
 */
export function encodeInfer({
  requestId, modelName, frameId, outputMode = 'full_frame', jpegQuality = 0,
  audio = null, centerSample = null, traceparent = null,
}) {
  const name = encodeModelName(modelName);
  const trace = encodeTraceparent(traceparent);
  const pcm = audio === null ? new Uint8Array(0) : pcm16Bytes(audio, 0);
  checkFrameId(frameId, 'frameId');
  let center = CENTER_DEFAULT;
  if (centerSample !== null) {
    const samples = pcm.length / 2;
    if (!Number.isInteger(centerSample) || centerSample < 0 || centerSample >= samples) {
      throw new RangeError(`centerSample must be in [0, ${samples}) of the audio window`);
    }
    center = centerSample;
  }
  const bytes = new Uint8Array(INFER_FIXED_SIZE + name.length + trace.length + pcm.length);
  const view = new DataView(bytes.buffer);
  writeHeader(view, MessageType.INFER, requestId);
  view.setUint32(8, frameId, true);
  view.setUint8(12, outputModeByte(outputMode));
  view.setUint8(13, checkQuality(jpegQuality));
  view.setUint8(14, name.length);
  view.setUint8(15, trace.length);
  view.setInt32(16, center, true);
  bytes.set(name, INFER_FIXED_SIZE);
  bytes.set(trace, INFER_FIXED_SIZE + name.length);
  bytes.set(pcm, INFER_FIXED_SIZE + name.length + trace.length);
  return bytes;
}

/**
 * CANCEL: stop an INFER or a session. The header alone.
 * @param {number} requestId
 * @returns {Uint8Array}
 */
export function encodeCancel(requestId) {
  const bytes = new Uint8Array(HEADER_SIZE);
  writeHeader(new DataView(bytes.buffer), MessageType.CANCEL, requestId);
  return bytes;
}

/**
 * SESSION_START: open a talking session (the server's Speak RPC) named by `requestId`.
 * @param {object} start
 * @param {number} start.requestId
 * @param {string} start.modelName
 * @param {number} [start.startFrameId] the template frame the session starts from
 * @param {'full_frame' | 'face_crop'} [start.outputMode]
 * @param {number} [start.jpegQuality]
 * @param {number} [start.credits] messages the client can take now (0 ... 2^32 - 1)
 * @param {string | null} [start.traceparent]
 * @param {number[]} [start.videoCodecs] non-empty: video output in one of these (VideoCodec values)
 * @param {boolean} [start.play] play the model's own audio track, paced by the server
 * @returns {Uint8Array}
 */
export function encodeSessionStart({
  requestId, modelName, startFrameId = 0, outputMode = 'full_frame', jpegQuality = 0, credits = 0,
  traceparent = null, videoCodecs = [], play = false,
}) {
  const name = encodeModelName(modelName);
  const trace = encodeTraceparent(traceparent);
  checkFrameId(startFrameId, 'startFrameId');
  checkUint32(credits, 'credits', 0);
  const codecs = Uint8Array.from(videoCodecs);
  if (codecs.length > 4 || new Set(codecs).size !== codecs.length || codecs.some((c) => c < 1 || c > 4)) {
    throw new RangeError(`videoCodecs must be 0-4 distinct VideoCodec values, got ${videoCodecs}`);
  }
  const tail = codecs.length ? 1 + codecs.length : 0;
  const bytes = new Uint8Array(SESSION_START_FIXED_SIZE + name.length + trace.length + tail);
  const view = new DataView(bytes.buffer);
  writeHeader(view, MessageType.SESSION_START, requestId);
  view.setUint16(2, (codecs.length ? FLAG_VIDEO : 0) | (play ? FLAG_PLAY : 0), true);
  if (codecs.length) {
    bytes[SESSION_START_FIXED_SIZE + name.length + trace.length] = codecs.length;
    bytes.set(codecs, SESSION_START_FIXED_SIZE + name.length + trace.length + 1);
  }
  view.setUint32(8, startFrameId, true);
  view.setUint8(12, outputModeByte(outputMode));
  view.setUint8(13, checkQuality(jpegQuality));
  view.setUint8(14, name.length);
  view.setUint8(15, trace.length);
  view.setUint32(16, credits, true);
  bytes.set(name, SESSION_START_FIXED_SIZE);
  bytes.set(trace, SESSION_START_FIXED_SIZE + name.length);
  return bytes;
}

/**
 * SESSION_AUDIO: the next chunk of a session's audio, 1 to 32,000 PCM16 samples.
 * @param {number} requestId
 * @param {Int16Array} samples PCM16 mono 16 kHz (sent little-endian whatever the platform)
 * @returns {Uint8Array}
 */
export function encodeSessionAudio(requestId, samples) {
  const pcm = pcm16Bytes(samples, 1);
  const bytes = new Uint8Array(HEADER_SIZE + pcm.length);
  writeHeader(new DataView(bytes.buffer), MessageType.SESSION_AUDIO, requestId);
  bytes.set(pcm, HEADER_SIZE);
  return bytes;
}

/**
 * SESSION_CONTROL: end (send the frames of the audio sent, then end) or interrupt a session.
 * @param {number} requestId
 * @param {number} action SessionAction.END or SessionAction.INTERRUPT
 * @returns {Uint8Array}
 */
export function encodeSessionControl(requestId, action) {
  if (action !== SessionAction.END && action !== SessionAction.INTERRUPT) {
    throw new RangeError(`action must be SessionAction.END or SessionAction.INTERRUPT, got ${action}`);
  }
  const bytes = new Uint8Array(HEADER_SIZE + 1);
  const view = new DataView(bytes.buffer);
  writeHeader(view, MessageType.SESSION_CONTROL, requestId);
  view.setUint8(HEADER_SIZE, action);
  return bytes;
}

/**
 * KEY_FRAME: the client lost a chunk of a video session and needs a key frame (and its config).
 * @param {number} requestId
 * @returns {Uint8Array}
 */
export function encodeKeyFrame(requestId) {
  const bytes = new Uint8Array(HEADER_SIZE);
  writeHeader(new DataView(bytes.buffer), MessageType.KEY_FRAME, requestId);
  return bytes;
}

/**
 * CREDIT: the client can take `credits` more messages of the session.
 * @param {number} requestId
 * @param {number} credits 1 ... 2^32 - 1
 * @returns {Uint8Array}
 */
export function encodeCredit(requestId, credits) {
  checkUint32(credits, 'credits', 1);
  const bytes = new Uint8Array(HEADER_SIZE + 4);
  const view = new DataView(bytes.buffer);
  writeHeader(view, MessageType.CREDIT, requestId);
  view.setUint32(HEADER_SIZE, credits, true);
  return bytes;
}

// --- v2 server messages ------------------------------------------------------------------------

/**
 * @typedef {{x1: number, y1: number, x2: number, y2: number}} Bounds
 *   the face box in full-frame pixels (x1, y1 inclusive; x2, y2 exclusive)
 * @typedef {{queueMs: number, audioFeaturesMs: number, inferenceMs: number, compositeMs: number,
 *   encodeMs: number, totalMs: number, batchSize: number}} Timings  the server's milliseconds
 * @typedef {{kind: 'frame', requestId: number, frameId: number, width: number, height: number,
 *   bounds: Bounds, timings: Timings, outputMode: string, image: Uint8Array}} FrameMessage
 * @typedef {{kind: 'session_frame', requestId: number, sequence: number, audioTimeMs: number,
 *   endOfUtterance: boolean, frameId: number, width: number, height: number, bounds: Bounds,
 *   timings: Timings, outputMode: string, image: Uint8Array}} SessionFrameMessage
 * @typedef {{kind: 'error' | 'session_end', requestId: number, code: string, message: string}} StatusMessage
 * @typedef {{kind: 'video_config', requestId: number, codec: number, codecString: string, width: number,
 *   height: number, description: Uint8Array}} VideoConfigMessage
 * @typedef {{kind: 'video_chunk', requestId: number, sequence: number, audioTimeMs: number,
 *   keyFrame: boolean, endOfUtterance: boolean, frameId: number, bounds: Bounds,
 *   data: Uint8Array}} VideoChunkMessage
 * @typedef {FrameMessage | SessionFrameMessage | StatusMessage | VideoConfigMessage | VideoChunkMessage} ServerMessage
 */

/**
 * Parse one binary message from the proxy. `image` is a view into `data`, not a copy.
 * @param {ArrayBuffer | Uint8Array} data
 * @returns {ServerMessage}
 * @throws {ProtocolError} for anything that is not a valid server message
 */
export function decodeServerMessage(data) {
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < HEADER_SIZE) {
    throw new ProtocolError(`a ${SUBPROTOCOL_V2} message starts with an ${HEADER_SIZE}-byte header; got ${bytes.length} bytes`);
  }
  if (bytes[0] !== VERSION) {
    throw new ProtocolError(`not a ${SUBPROTOCOL_V2} message: version byte ${bytes[0]}, expected ${VERSION}`);
  }
  const type = bytes[1];
  const flags = view.getUint16(2, true);
  const requestId = view.getUint32(4, true);
  const allowedFlags = {
    [MessageType.SESSION_FRAME]: FLAG_END_OF_UTTERANCE,
    [MessageType.VIDEO_CHUNK]: FLAG_KEY_FRAME | FLAG_CHUNK_END_OF_UTTERANCE,
  }[type] ?? 0;
  switch (type) {
    case MessageType.FRAME:
    case MessageType.SESSION_FRAME:
    case MessageType.ERROR:
    case MessageType.SESSION_END:
    case MessageType.VIDEO_CONFIG:
    case MessageType.VIDEO_CHUNK:
      break;
    default:
      throw new ProtocolError(`unknown server message type 0x${hex2(type)}`, requestId);
  }
  if (flags & ~allowedFlags) {
    throw new ProtocolError(`unknown flags 0x${flags.toString(16).padStart(4, '0')}`, requestId);
  }
  if (type === MessageType.FRAME) return decodeFrame(bytes, view, requestId);
  if (type === MessageType.SESSION_FRAME) return decodeSessionFrame(bytes, view, flags, requestId);
  if (type === MessageType.VIDEO_CONFIG) return decodeVideoConfig(bytes, view, requestId);
  if (type === MessageType.VIDEO_CHUNK) return decodeVideoChunk(bytes, view, flags, requestId);
  const kind = type === MessageType.ERROR ? 'error' : 'session_end';
  const { code, message } = decodeStatus(bytes, kind === 'error' ? 'ERROR' : 'SESSION_END', requestId);
  if (kind === 'error' && code === 'OK') throw new ProtocolError('an ERROR cannot carry status OK', requestId);
  return { kind, requestId, code, message };
}

function decodeFrame(bytes, view, requestId) {
  need(bytes, FRAME_FIXED_SIZE + 1, 'FRAME', requestId);
  return {
    kind: 'frame',
    requestId,
    frameId: view.getUint32(8, true),
    width: view.getUint16(12, true),
    height: view.getUint16(14, true),
    bounds: readBounds(view, 16),
    timings: readTimings(view, 32),
    outputMode: outputModeName(view.getUint8(58), requestId),
    image: bytes.subarray(FRAME_FIXED_SIZE),
  };
}

function decodeSessionFrame(bytes, view, flags, requestId) {
  need(bytes, SESSION_FRAME_FIXED_SIZE + 1, 'SESSION_FRAME', requestId);
  return {
    kind: 'session_frame',
    requestId,
    sequence: view.getUint32(8, true),
    audioTimeMs: view.getFloat64(12, true),
    endOfUtterance: Boolean(flags & FLAG_END_OF_UTTERANCE),
    frameId: view.getUint32(20, true),
    width: view.getUint16(24, true),
    height: view.getUint16(26, true),
    bounds: readBounds(view, 28),
    timings: readTimings(view, 44),
    outputMode: outputModeName(view.getUint8(70), requestId),
    image: bytes.subarray(SESSION_FRAME_FIXED_SIZE),
  };
}

function decodeVideoConfig(bytes, view, requestId) {
  need(bytes, VIDEO_CONFIG_FIXED_SIZE, 'VIDEO_CONFIG', requestId);
  const codec = view.getUint8(8);
  const textEnd = VIDEO_CONFIG_FIXED_SIZE + view.getUint8(9);
  need(bytes, textEnd, 'VIDEO_CONFIG', requestId);
  if (codec < 1 || codec > 4) throw new ProtocolError(`VIDEO_CONFIG codec ${codec} is unknown`, requestId);
  const text = bytes.subarray(VIDEO_CONFIG_FIXED_SIZE, textEnd);
  if (text.length === 0 || text.some((byte) => byte > 0x7f)) {
    throw new ProtocolError('VIDEO_CONFIG codec string must be 1-255 ASCII characters', requestId);
  }
  return {
    kind: 'video_config',
    requestId,
    codec,
    codecString: String.fromCharCode(...text),
    width: view.getUint16(10, true),
    height: view.getUint16(12, true),
    description: bytes.subarray(textEnd),
  };
}

function decodeVideoChunk(bytes, view, flags, requestId) {
  need(bytes, VIDEO_CHUNK_FIXED_SIZE + 1, 'VIDEO_CHUNK', requestId);
  return {
    kind: 'video_chunk',
    requestId,
    sequence: view.getUint32(8, true),
    audioTimeMs: view.getFloat64(12, true),
    keyFrame: Boolean(flags & FLAG_KEY_FRAME),
    endOfUtterance: Boolean(flags & FLAG_CHUNK_END_OF_UTTERANCE),
    frameId: view.getUint32(20, true),
    bounds: readBounds(view, 24),
    data: bytes.subarray(VIDEO_CHUNK_FIXED_SIZE),
  };
}

function decodeStatus(bytes, name, requestId) {
  need(bytes, STATUS_FIXED_SIZE, name, requestId);
  const number = bytes[HEADER_SIZE];
  const code = STATUS_NAMES[number];
  if (code === undefined) {
    throw new ProtocolError(`${name} status ${number} is not a gRPC status code`, requestId);
  }
  const text = bytes.subarray(STATUS_FIXED_SIZE);
  if (text.length > MAX_ERROR_TEXT_BYTES) {
    throw new ProtocolError(`${name} text is longer than ${MAX_ERROR_TEXT_BYTES} bytes`, requestId);
  }
  try {
    return { code, message: strictUtf8.decode(text) };
  } catch {
    throw new ProtocolError(`${name} text is not valid UTF-8`, requestId);
  }
}

function readBounds(view, offset) {
  return {
    x1: view.getInt32(offset, true),
    y1: view.getInt32(offset + 4, true),
    x2: view.getInt32(offset + 8, true),
    y2: view.getInt32(offset + 12, true),
  };
}

function readTimings(view, offset) {
  const ms = (index) => view.getFloat32(offset + 4 * index, true);
  return {
    queueMs: ms(0),
    audioFeaturesMs: ms(1),
    inferenceMs: ms(2),
    compositeMs: ms(3),
    encodeMs: ms(4),
    totalMs: ms(5),
    batchSize: view.getUint16(offset + 24, true),
  };
}

// --- JSON text messages ------------------------------------------------------------------------

/**
 * One JSON request as text. `id` is echoed by the reply; `fields` are the type's own fields.
 * @param {string} type 'list_models', 'get_metadata', 'get_video_frame', 'inference', 'ping', ...
 * @param {number | string | null} id
 * @param {Record<string, unknown>} [fields]
 * @returns {string}
 */
export function jsonRequest(type, id, fields = {}) {
  const message = { type, ...fields };
  if (id !== null && id !== undefined) message.id = id;
  return JSON.stringify(message);
}

/**
 * Parse one JSON text message from the proxy: an object with a string `type`.
 * @param {string} text
 * @returns {Record<string, any> & {type: string}}
 * @throws {ProtocolError}
 */
export function parseJsonReply(text) {
  let message;
  try {
    message = JSON.parse(text);
  } catch {
    throw new ProtocolError('a text message from the proxy is not valid JSON');
  }
  if (message === null || typeof message !== 'object' || Array.isArray(message) || typeof message.type !== 'string') {
    throw new ProtocolError('a text message from the proxy must be a JSON object with a "type"');
  }
  return message;
}

// --- shared ------------------------------------------------------------------------------------

function writeHeader(view, type, requestId) {
  checkUint32(requestId, 'requestId', 1);
  view.setUint8(0, VERSION);
  view.setUint8(1, type);
  view.setUint16(2, 0, true);
  view.setUint32(4, requestId, true);
}

function encodeModelName(modelName) {
  if (typeof modelName !== 'string') throw new TypeError('the model name must be a string');
  const name = utf8.encode(modelName);
  if (name.length < 1 || name.length > MAX_MODEL_NAME_BYTES || !modelName.isWellFormed()) {
    throw new RangeError(`the model name must be 1-${MAX_MODEL_NAME_BYTES} bytes of valid UTF-8`);
  }
  return name;
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}(-[\x21-\x7e]*)?$/;

/** W3C Trace Context, as the proxy checks it: version ff and all-zero ids are invalid, and
 * version 00 has exactly four fields. */
function encodeTraceparent(traceparent) {
  if (traceparent === null) return new Uint8Array(0);
  const match = typeof traceparent === 'string' ? TRACEPARENT.exec(traceparent) : null;
  if (
    match === null
    || traceparent.length > MAX_TRACEPARENT_LENGTH
    || match[1] === 'ff'
    || (match[1] === '00' && match[4] !== undefined)
    || /^0+$/.test(match[2])
    || /^0+$/.test(match[3])
  ) {
    throw new RangeError('traceparent must be a W3C Trace Context value like '
      + '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
  }
  return utf8.encode(traceparent);
}

function pcm16Bytes(samples, minSamples) {
  if (!(samples instanceof Int16Array)) throw new TypeError('audio must be an Int16Array of PCM16 samples');
  if (samples.length < minSamples || samples.length * 2 > MAX_AUDIO_BYTES) {
    throw new RangeError(`audio must be ${minSamples}-${MAX_AUDIO_BYTES / 2} samples, got ${samples.length}`);
  }
  const bytes = new Uint8Array(samples.length * 2);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < samples.length; i += 1) view.setInt16(2 * i, samples[i], true);
  return bytes;
}

function checkFrameId(frameId, field) {
  if (!Number.isInteger(frameId) || frameId < 0 || frameId > MAX_FRAME_ID) {
    throw new RangeError(`${field} must be an integer in [0, ${MAX_FRAME_ID}], got ${frameId}`);
  }
}

function checkUint32(value, field, min) {
  if (!Number.isInteger(value) || value < min || value > MAX_REQUEST_ID) {
    throw new RangeError(`${field} must be an integer in [${min}, ${MAX_REQUEST_ID}], got ${value}`);
  }
}

function checkQuality(quality) {
  if (!Number.isInteger(quality) || quality < 0 || quality > MAX_JPEG_QUALITY) {
    throw new RangeError(`jpegQuality must be in [0, ${MAX_JPEG_QUALITY}], got ${quality}`);
  }
  return quality;
}

function outputModeByte(mode) {
  const byte = OutputMode[mode];
  if (byte === undefined || !Object.hasOwn(OutputMode, mode)) {
    throw new RangeError(`outputMode must be "full_frame" or "face_crop", got ${mode}`);
  }
  return byte;
}

function outputModeName(byte, requestId) {
  const name = Object.keys(OutputMode).find((key) => OutputMode[key] === byte);
  if (name === undefined) {
    throw new ProtocolError(`output_mode must be 1 (full frame) or 2 (face crop), got ${byte}`, requestId);
  }
  return name;
}

function need(bytes, size, name, requestId) {
  if (bytes.length < size) {
    throw new ProtocolError(`${name} is truncated: ${bytes.length} bytes, needs ${size}+`, requestId);
  }
}

function hex2(byte) {
  return byte.toString(16).padStart(2, '0');
}
