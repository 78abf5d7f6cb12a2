/**
 * The page's WebSocket to the proxy: protocol negotiation (v2, falling back to the seed's v1),
 * requests matched to their replies, speaking sessions with credits, reconnection with backoff,
 * and byte counters. Message bytes are made and read by `protocol.js`; this module only moves them.
 *
 * @module connection
 */

import * as protocol from './protocol.js';

/** Where the connection is; `statechange` events carry it. */
export const State = Object.freeze({
  DISCONNECTED: 'disconnected',
  CONNECTING: 'connecting',
  OPEN: 'open',
  RECONNECTING: 'reconnecting',
});

/** Errors that say "this request cannot succeed as it is": retrying the same request is pointless. */
const PERMANENT_CODES = new Set([
  'NOT_FOUND', 'OUT_OF_RANGE', 'INVALID_ARGUMENT', 'FAILED_PRECONDITION', 'UNIMPLEMENTED', 'PERMISSION_DENIED',
]);

/** A request the proxy or the server refused, with the gRPC status name the proxy sent. */
export class ServerError extends Error {
  /**
   * @param {string} code gRPC status name, e.g. 'NOT_FOUND'
   * @param {string} message the server's text
   */
  constructor(code, message) {
    super(message);
    this.name = 'ServerError';
    this.code = code;
  }

  /** Whether sending the same request again cannot help. */
  get permanent() {
    return PERMANENT_CODES.has(this.code);
  }
}

/** The connection closed (or was never open) while a request waited for its reply. */
export class ConnectionLost extends Error {
  constructor(message = 'not connected to the proxy') {
    super(message);
    this.name = 'ConnectionLost';
    this.permanent = true;
  }
}

/**
 * The proxy's WebSocket URL for a page: same host, `/ws`, `wss:` when the page came over TLS.
 * @param {{protocol: string, host: string}} location the page's `window.location`
 * @returns {string}
 */
export function defaultSocketUrl(location) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/ws`;
}

/** Reconnect delays: 0.5 s doubling up to 15 s, each between half and all of that ("equal jitter"). */
export const BACKOFF_BASE_MS = 500;
export const BACKOFF_MAX_MS = 15000;

/**
 * How long to wait before reconnect attempt `attempt` (1, 2, ...). The jitter spreads the
 * reconnects of many pages after a proxy restart, so they do not all arrive at once.
 * @param {number} attempt
 * @param {() => number} [random] uniform in [0, 1)
 * @returns {number} milliseconds
 */
export function backoffDelay(attempt, random = Math.random) {
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.max(0, attempt - 1));
  return ceiling / 2 + random() * (ceiling / 2);
}

/**
 * @typedef {object} FrameReply  one lip-synced frame, whatever protocol carried it
 * @property {number} frameId
 * @property {Uint8Array} image the JPEG
 * @property {'full_frame' | 'face_crop'} outputMode
 * @property {protocol.Bounds | null} bounds where a face crop goes in the full frame
 * @property {protocol.Timings | null} timings the server's milliseconds (v2 and JSON only)
 * @property {number} latencyMs from sending the request to its reply
 */

/**
 * One WebSocket to the proxy at a time, reopened with backoff when it drops.
 *
 * Events: `statechange` (detail `{state, protocol, attempt, delayMs}`), `open` (detail
 * `{protocol}`), `close` (detail `{code, reason, reconnecting}`) and `notice` (detail
 * `{message}`: a reply no request was waiting for, such as an error about a malformed message).
 */
export class Connection extends EventTarget {
  /**
   * @param {object} [options]
   * @param {'auto' | 'v2' | 'v1'} [options.protocol] auto tries v2, then the seed's v1
   * @param {number} [options.requestTimeoutMs] a reply later than this fails its request
   * @param {(url: string, protocols: string[]) => WebSocket} [options.createSocket]
   */
  constructor({ protocol: wanted = 'auto', requestTimeoutMs = 10000, createSocket } = {}) {
    super();
    this.wanted = wanted;
    this.requestTimeoutMs = requestTimeoutMs;
    this.createSocket = createSocket ?? ((url, protocols) => new WebSocket(url, protocols));
    this.url = '';
    this.state = State.DISCONNECTED;
    /** @type {'v2' | 'v1' | null} what the open socket speaks */
    this.protocol = null;
    this.bytesIn = 0;
    this.bytesOut = 0;
    this.attempt = 0;
    this.socket = null;
    this.reconnectTimer = null;
    this.nextJsonId = 1;
    this.nextRequestId = 1;
    /** JSON requests by id, v2 INFERs by request id, v2 sessions by id, v1 requests in send order. */
    this.pendingJson = new Map();
    this.pendingInfers = new Map();
    this.sessions = new Map();
    this.v1Queue = [];
  }

  /** Whether requests can be sent now. */
  get isOpen() {
    return this.state === State.OPEN;
  }

  /**
   * Open the WebSocket at `url` and keep it open (reconnecting with backoff) until disconnect().
   * @param {string} url
   * @param {'auto' | 'v2' | 'v1'} [wanted]
   */
  connect(url, wanted = this.wanted) {
    this.closeSocket();
    this.url = url;
    this.wanted = wanted;
    this.attempt = 0;
    this.openSocket(State.CONNECTING);
  }

  /** Close the WebSocket and stop reconnecting; waiting requests fail with ConnectionLost. */
  disconnect() {
    this.closeSocket();
    if (this.state !== State.DISCONNECTED) this.setState(State.DISCONNECTED);
  }

  /**
   * Send a JSON request and wait for the reply with its id; an error reply rejects with ServerError.
   * @param {string} type
   * @param {Record<string, unknown>} [fields]
   * @returns {Promise<Record<string, any>>}
   */
  requestJson(type, fields = {}) {
    const id = this.nextJsonId;
    this.nextJsonId += 1;
    return this.track(this.pendingJson, id, () => protocol.jsonRequest(type, id, fields));
  }

  /**
   * One lip-synced frame: a v2 INFER, or on a v1 connection the seed's binary request (full
   * frames) or a JSON inference with the image included (face crops, which v1 cannot carry).
   * @param {{modelName: string, frameId: number, outputMode?: 'full_frame' | 'face_crop'}} request
   * @returns {Promise<FrameReply>}
   */
  async infer({ modelName, frameId, outputMode = 'full_frame' }) {
    const sentAt = performance.now();
    if (this.protocol === 'v2') {
      const requestId = this.takeRequestId();
      const message = protocol.encodeInfer({ requestId, modelName, frameId, outputMode });
      const reply = await this.track(this.pendingInfers, requestId, () => message);
      return { ...pickFrame(reply), latencyMs: performance.now() - sentAt };
    }
    if (outputMode === 'face_crop') {
      const reply = await this.requestJson('inference', {
        model_name: modelName, frame_id: frameId, include_image: true, output_mode: outputMode,
      });
      return {
        frameId: reply.frame_id,
        image: base64Bytes(reply.image_base64),
        outputMode: reply.output_mode,
        bounds: reply.bounds && { x1: reply.bounds[0], y1: reply.bounds[1], x2: reply.bounds[2], y2: reply.bounds[3] },
        timings: reply.timings && camelTimings(reply.timings),
        latencyMs: performance.now() - sentAt,
      };
    }
    const image = await this.trackV1(protocol.encodeV1Request(modelName, frameId));
    return { frameId, image, outputMode, bounds: null, timings: null, latencyMs: performance.now() - sentAt };
  }

  /**
   * Start a session (v2 only): audio in (or the model's own with `play`), frames out at the model's
   * fps against credits, as JPEGs or, with `videoCodecs`, as video chunks.
   * @param {{modelName: string, startFrameId?: number, outputMode?: 'full_frame' | 'face_crop',
   *   credits?: number, videoCodecs?: number[], play?: boolean}} options
   * @returns {SpeakSession}
   */
  openSession({
    modelName, startFrameId = 0, outputMode = 'full_frame', credits = 0, videoCodecs = [], play = false,
  }) {
    if (!this.isOpen) throw new ConnectionLost();
    if (this.protocol !== 'v2') {
      throw new ServerError('UNIMPLEMENTED', 'live sessions need the lipsync.v2 protocol; this connection speaks v1');
    }
    const requestId = this.takeRequestId();
    const session = new SpeakSession(this, requestId);
    this.sessions.set(requestId, session);
    this.send(protocol.encodeSessionStart({
      requestId, modelName, startFrameId, outputMode, credits, videoCodecs, play,
    }));
    return session;
  }

  // --- internals ---------------------------------------------------------------------------------

  closeSocket() {
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    const socket = this.socket;
    this.socket = null;
    this.protocol = null;
    if (socket !== null) {
      socket.onopen = socket.onclose = socket.onmessage = socket.onerror = null;
      socket.close(1000, 'client disconnect');
    }
    this.failAll(new ConnectionLost('disconnected'));
  }

  send(data) {
    if (this.socket === null || this.state !== State.OPEN) throw new ConnectionLost();
    this.socket.send(data);
    this.bytesOut += typeof data === 'string' ? data.length : data.byteLength;
  }

  /** Send the message `make()` returns and wait for the reply that `pending` will get under `key`. */
  track(pending, key, make) {
    return new Promise((resolve, reject) => {
      if (!this.isOpen) {
        reject(new ConnectionLost());
        return;
      }
      const timer = setTimeout(() => {
        pending.delete(key);
        if (pending === this.pendingInfers && this.isOpen) this.send(protocol.encodeCancel(key));
        reject(new ServerError('DEADLINE_EXCEEDED', `no reply from the proxy within ${this.requestTimeoutMs / 1000} s`));
      }, this.requestTimeoutMs);
      pending.set(key, { resolve, reject, timer });
      try {
        this.send(make());
      } catch (error) {
        clearTimeout(timer);
        pending.delete(key);
        reject(error);
      }
    });
  }

  /** v1 replies carry no id; they come in request order, so they settle the queue's head. */
  trackV1(message) {
    return new Promise((resolve, reject) => {
      if (!this.isOpen) {
        reject(new ConnectionLost());
        return;
      }
      // A timed-out entry stays queued (settled) so that its late reply is matched to it, not to
      // the request after it.
      const entry = { resolve, reject, settled: false, timer: null };
      entry.timer = setTimeout(() => {
        entry.settled = true;
        reject(new ServerError('DEADLINE_EXCEEDED', `no reply from the proxy within ${this.requestTimeoutMs / 1000} s`));
      }, this.requestTimeoutMs);
      this.v1Queue.push(entry);
      try {
        this.send(message);
      } catch (error) {
        this.v1Queue.pop();
        clearTimeout(entry.timer);
        reject(error);
      }
    });
  }

  takeRequestId() {
    // Ids of finished requests are reused after 2^32 - 1 others; one still open is skipped.
    let id = this.nextRequestId;
    while (this.pendingInfers.has(id) || this.sessions.has(id)) id = id >= protocol.MAX_REQUEST_ID ? 1 : id + 1;
    this.nextRequestId = id >= protocol.MAX_REQUEST_ID ? 1 : id + 1;
    return id;
  }

  openSocket(state) {
    const order = this.wanted === 'auto' ? ['v2', 'v1'] : [this.wanted];
    this.setState(state);
    this.tryProtocol(order, 0);
  }

  tryProtocol(order, index) {
    const wanted = order[index];
    let socket;
    try {
      socket = this.createSocket(this.url, wanted === 'v2' ? [protocol.SUBPROTOCOL_V2] : []);
    } catch (error) {
      // A malformed URL fails at once; there is nothing to retry.
      this.notice(`cannot open ${this.url}: ${error.message}`);
      this.setState(State.DISCONNECTED);
      return;
    }
    socket.binaryType = 'arraybuffer';
    this.socket = socket;
    let opened = false;
    socket.onopen = () => {
      opened = true;
      // A server that ignores the subprotocol speaks the seed's v1.
      this.protocol = socket.protocol === protocol.SUBPROTOCOL_V2 ? 'v2' : 'v1';
      this.attempt = 0;
      this.setState(State.OPEN);
      this.dispatchEvent(new CustomEvent('open', { detail: { protocol: this.protocol } }));
    };
    socket.onmessage = (event) => this.receive(event.data);
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      // Browsers refuse a handshake whose reply lacks the offered subprotocol (a v1-only proxy),
      // so auto mode asks again without it before it counts as a failed attempt.
      if (!opened && index + 1 < order.length) {
        this.tryProtocol(order, index + 1);
        return;
      }
      this.protocol = null;
      this.failAll(new ConnectionLost(`connection closed (${event.code}${event.reason ? `: ${event.reason}` : ''})`));
      this.dispatchEvent(new CustomEvent('close', {
        detail: { code: event.code, reason: event.reason, reconnecting: true, opened },
      }));
      this.scheduleReconnect();
    };
  }

  scheduleReconnect() {
    this.attempt += 1;
    const delayMs = backoffDelay(this.attempt);
    this.setState(State.RECONNECTING, delayMs);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.openSocket(State.RECONNECTING);
    }, delayMs);
  }

  setState(state, delayMs = null) {
    this.state = state;
    this.dispatchEvent(new CustomEvent('statechange', {
      detail: { state, protocol: this.protocol, attempt: this.attempt, delayMs },
    }));
  }

  receive(data) {
    if (typeof data === 'string') {
      this.bytesIn += data.length;
      this.receiveText(data);
    } else {
      this.bytesIn += data.byteLength;
      if (this.protocol === 'v2') this.receiveV2(data);
      else this.settleV1((entry) => entry.resolve(new Uint8Array(data)), 'a binary reply');
    }
  }

  receiveText(text) {
    let message;
    try {
      message = protocol.parseJsonReply(text);
    } catch (error) {
      this.notice(error.message);
      return;
    }
    const waiting = message.id === undefined ? undefined : this.pendingJson.get(message.id);
    if (waiting !== undefined) {
      this.pendingJson.delete(message.id);
      clearTimeout(waiting.timer);
      if (message.type === 'error' || message.success === false) {
        waiting.reject(new ServerError(message.code ?? 'UNKNOWN', message.message ?? message.error ?? 'request failed'));
      } else {
        waiting.resolve(message);
      }
    } else if (message.type === 'error' && message.id === undefined && this.protocol === 'v1' && this.v1Queue.length > 0) {
      // A v1 request's failure is a text error in the reply's place.
      this.settleV1((entry) => entry.reject(new ServerError(message.code, message.message)), 'an error');
    } else {
      this.notice(message.type === 'error' ? `${message.code}: ${message.message}` : `unexpected ${message.type} message`);
    }
  }

  settleV1(settle, what) {
    const entry = this.v1Queue.shift();
    if (entry === undefined) {
      this.notice(`the proxy sent ${what} no request was waiting for`);
      return;
    }
    clearTimeout(entry.timer);
    if (!entry.settled) settle(entry);
  }

  receiveV2(data) {
    let message;
    try {
      message = protocol.decodeServerMessage(data);
    } catch (error) {
      this.notice(`unreadable message from the proxy: ${error.message}`);
      return;
    }
    const session = this.sessions.get(message.requestId);
    if (session !== undefined) {
      session.receive(message);
      return;
    }
    const waiting = this.pendingInfers.get(message.requestId);
    if (waiting === undefined) {
      // A reply that crossed a CANCEL, or an error about a message the proxy could not read.
      if (message.kind === 'error' && message.requestId === 0) this.notice(`${message.code}: ${message.message}`);
      return;
    }
    this.pendingInfers.delete(message.requestId);
    clearTimeout(waiting.timer);
    if (message.kind === 'frame') waiting.resolve(message);
    else waiting.reject(new ServerError(message.code, message.message || message.code));
  }

  failAll(error) {
    for (const pending of [this.pendingJson, this.pendingInfers]) {
      for (const { reject, timer } of pending.values()) {
        clearTimeout(timer);
        reject(error);
      }
      pending.clear();
    }
    for (const entry of this.v1Queue.splice(0)) {
      clearTimeout(entry.timer);
      if (!entry.settled) entry.reject(error);
    }
    for (const session of [...this.sessions.values()]) session.finish('UNAVAILABLE', error.message);
  }

  notice(message) {
    this.dispatchEvent(new CustomEvent('notice', { detail: { message } }));
  }
}

/**
 * One talking session (the server's Speak RPC) on a v2 connection.
 *
 * Events: `frame` (detail: the SESSION_FRAME message), `video_config` and `video_chunk` (details:
 * those messages, for a video session), `error` (detail: ServerError; the session goes on) and `end`
 * (detail `{code, message}`; the last event).
 */
export class SpeakSession extends EventTarget {
  constructor(connection, requestId) {
    super();
    this.connection = connection;
    this.requestId = requestId;
    this.open = true;
  }

  /**
   * Send PCM16 mono 16 kHz audio, split into chunks the protocol allows.
   * @param {Int16Array} samples
   */
  sendAudio(samples) {
    const most = protocol.MAX_AUDIO_BYTES / 2;
    for (let start = 0; start < samples.length; start += most) {
      this.connection.send(protocol.encodeSessionAudio(this.requestId, samples.subarray(start, start + most)));
    }
  }

  /** Let the proxy send `credits` more frames. */
  grant(credits) {
    if (this.open) this.connection.send(protocol.encodeCredit(this.requestId, credits));
  }

  /** No more audio: the frames of what was sent still come, then the session ends. */
  end() {
    if (this.open) this.connection.send(protocol.encodeSessionControl(this.requestId, protocol.SessionAction.END));
  }

  /** Stop speaking at once, dropping audio not yet turned into frames. */
  interrupt() {
    if (this.open) this.connection.send(protocol.encodeSessionControl(this.requestId, protocol.SessionAction.INTERRUPT));
  }

  /** Ask a video session for a key frame (after a lost chunk or a decoder error). */
  requestKeyFrame() {
    if (this.open && this.connection.isOpen) this.connection.send(protocol.encodeKeyFrame(this.requestId));
  }

  /** Abandon the session; it ends with CANCELLED. */
  cancel() {
    if (this.open && this.connection.isOpen) this.connection.send(protocol.encodeCancel(this.requestId));
  }

  receive(message) {
    if (message.kind === 'session_frame') {
      this.dispatchEvent(new CustomEvent('frame', { detail: message }));
    } else if (message.kind === 'video_config' || message.kind === 'video_chunk') {
      this.dispatchEvent(new CustomEvent(message.kind, { detail: message }));
    } else if (message.kind === 'error') {
      this.dispatchEvent(new CustomEvent('error', { detail: new ServerError(message.code, message.message) }));
    } else if (message.kind === 'session_end') {
      this.finish(message.code, message.message);
    }
  }

  finish(code, message) {
    if (!this.open) return;
    this.open = false;
    this.connection.sessions.delete(this.requestId);
    this.dispatchEvent(new CustomEvent('end', { detail: { code, message } }));
  }
}

function pickFrame(message) {
  const { frameId, image, outputMode, bounds, timings } = message;
  return { frameId, image, outputMode, bounds, timings };
}

function camelTimings(timings) {
  return {
    queueMs: timings.queue_ms,
    audioFeaturesMs: timings.audio_features_ms,
    inferenceMs: timings.inference_ms,
    compositeMs: timings.composite_ms,
    encodeMs: timings.encode_ms,
    totalMs: timings.total_ms,
    batchSize: timings.batch_size,
  };
}

/**
 * The bytes of a base64 string (the JSON replies' images and audio).
 * @param {string} text
 * @returns {Uint8Array}
 */
export function base64Bytes(text) {
  if (typeof Uint8Array.fromBase64 === 'function') return Uint8Array.fromBase64(text);
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return bytes;
}
