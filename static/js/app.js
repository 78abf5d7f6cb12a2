/**
 * The client page: wires the connection, the player, the renderer, the audio, the microphone and
 * the metrics to the controls of `layout.js`. The logic lives in those modules; this one only
 * connects them to the page.
 *
 * @module app
 */

import { ActivityLog } from './activity-log.js';
import { LatencyChart } from './chart.js';
import {
  base64Bytes, Connection, ConnectionLost, defaultSocketUrl, ServerError, State,
} from './connection.js';
import { renderLayout } from './layout.js';
import { Microphone, MicrophoneError } from './microphone.js';
import { PackageAudio } from './package-audio.js';
import { SAMPLE_RATE } from './protocol.js';
import { Player } from './player.js';
import { BaseFrameCache, decodeJpeg, FrameRenderer, releaseFrame } from './render.js';
import { formatBytes, formatMs, LatencyWindow, RateMeter } from './stats.js';
import {
  BaseFrames, CODEC_NAMES, decodableCodecs, fetchBaseVideo, VideoSessionPlayer,
} from './video.js';

renderLayout(document.getElementById('app'));

const $ = (id) => document.getElementById(id);
const ui = {
  status: $('connection-status'), statusText: $('connection-text'),
  banner: $('error-banner'), errorCode: $('error-code'), errorText: $('error-text'),
  canvas: $('frame-canvas'), empty: $('screen-empty'),
  badgeFrame: $('badge-frame'), badgeMode: $('badge-mode'), badgeLive: $('badge-live'),
  badgeDelivery: $('badge-delivery'), bitrate: $('m-bitrate'),
  play: $('play-button'), playLabel: $('play-label'), single: $('single-button'), loop: $('loop-toggle'),
  sound: $('sound-button'), mic: $('mic-button'), micMessage: $('mic-message'),
  frameSlider: $('frame-slider'), frameOutput: $('frame-output'),
  fpsSlider: $('fps-slider'), fpsOutput: $('fps-output'),
  modeInputs: document.querySelectorAll('input[name="output-mode"]'),
  connectForm: $('connect-form'), url: $('ws-url'), protocol: $('protocol-select'), connect: $('connect-button'),
  model: $('model-input'), modelOptions: $('model-options'),
  metaFrames: $('meta-frames'), metaFps: $('meta-fps'), metaSize: $('meta-size'),
  metaEngine: $('meta-engine'), metaAudio: $('meta-audio'),
  latency: $('m-latency'), p50: $('m-p50'), p95: $('m-p95'), fps: $('m-fps'), target: $('m-target'),
  frames: $('m-frames'), late: $('m-late'), dropped: $('m-dropped'),
  dataIn: $('m-data-in'), dataOut: $('m-data-out'), rate: $('m-rate'),
  server: $('m-server'), batch: $('m-batch'), inflight: $('m-inflight'), errors: $('m-errors'),
  architecture: $('architecture'), archLink: $('arch-browser-link'),
};

const log = new ActivityLog($('activity-log'));
const chart = new LatencyChart($('latency-chart'));
const renderer = new FrameRenderer(ui.canvas);
const audio = new PackageAudio($('package-audio'));
const connection = new Connection();
const latencies = new LatencyWindow(240);
const shownRate = new RateMeter(2000);

const state = {
  /** @type {null | {name: string, frameCount: number, fps: number, width: number, height: number,
   *   engine: string, hasAudio: boolean}} */
  model: null,
  frame: 0,
  fps: Number(ui.fpsSlider.value),
  loop: ui.loop.checked,
  mode: 'full_frame',
  baseFrames: null,
  inflight: 0,
  metrics: { frames: 0, errors: 0, lateBase: 0, droppedBase: 0, serverMs: null, batch: null },
  /** The live microphone mode while on: its session, the microphone, its video output (null: JPEG
   * frames), when its audio started (performance.now()), the chain that keeps its JPEG frames in
   * order, and whether it is ending.
   * @type {null | {session: import('./connection.js').SpeakSession | null, microphone: Microphone | null,
   *   output: {close: () => void} | null, startedAt: number | null, chain: Promise<void>, stopping: boolean}} */
  live: null,
  /** Whether to play again once reconnected. */
  resume: false,
  /** When the error in the banner was reported (performance.now()). */
  errorAt: 0,
  /** Codecs this browser decodes with WebCodecs (empty: JPEG only); `?video=off` turns video off. */
  videoCodecs: [],
  /** The playing video session: its session, player and model; null when none plays. */
  video: null,
  /** Base videos by `model/codec`, fetched once per page (the HTTP cache keeps them across pages). */
  baseVideos: new Map(),
  /** A video session ended because the connection dropped (then playback resumes once it is back). */
  videoCut: false,
  /** The `model/codec` keys of `baseVideos` that have arrived. */
  baseReady: new Set(),
};

// --- frames ------------------------------------------------------------------------------------

/** One frame, requested in the current mode and decoded (with its base frame for a face crop). */
async function fetchFrame(frameId) {
  const model = state.model;
  const mode = state.mode;
  const requestedAt = performance.now();
  state.inflight += 1;
  try {
    const [reply, baseJpeg] = await Promise.all([
      connection.infer({ modelName: model.name, frameId, outputMode: mode }),
      mode === 'face_crop' ? state.baseFrames.get(frameId) : null,
    ]);
    noteReply(reply.latencyMs, reply.timings);
    const [image, base] = await Promise.all([
      decodeJpeg(reply.image),
      baseJpeg === null ? null : decodeJpeg(baseJpeg),
    ]);
    return { frameId, image, base, bounds: reply.bounds, requestedAt };
  } finally {
    state.inflight -= 1;
  }
}

function noteReply(latencyMs, timings) {
  latencies.add(latencyMs);
  if (timings) noteTimings(timings);
}

function noteTimings(timings) {
  state.metrics.serverMs = timings.totalMs;
  state.metrics.batch = timings.batchSize;
}

function present(frame, frameId) {
  renderer.draw(frame);
  releaseFrame(frame);
  // Only a frame asked for after the error proves that what it reported works again.
  if (frame.requestedAt > state.errorAt) resolved('frames');
  state.metrics.frames += 1;
  shownRate.mark();
  state.frame = frameId;
  ui.empty.hidden = true;
  ui.badgeFrame.textContent = `frame ${frameId}`;
  ui.frameSlider.value = String(frameId);
  showFramePosition();
}

function showFramePosition() {
  const last = state.model ? state.model.frameCount - 1 : 0;
  ui.frameOutput.textContent = `${ui.frameSlider.value} / ${last}`;
}

const player = new Player({
  fetchFrame,
  present: (frame, frameId) => {
    present(frame, frameId);
    audio.follow(frameId, state.model.fps, state.fps);
  },
  release: releaseFrame,
});

player.addEventListener('error', (event) => reportError(event.detail.error, `frame ${event.detail.frameId}`));
player.addEventListener('stop', (event) => {
  audio.pause();
  showPlaying(false);
  const { reason } = event.detail;
  if (reason === 'ended') log.add('Reached the last frame');
  else if (reason === 'error') log.add('Playback stopped: the server is not delivering frames', 'warn');
});

function play() {
  if (!canRequest()) return;
  stopLive();
  const last = state.model.frameCount - 1;
  const from = !state.loop && state.frame >= last ? 0 : state.frame;
  stopVideo();
  if (videoPossible()) {
    const model = state.model;
    if (state.baseReady.has(`${model.name}/${state.videoCodecs[0]}`)) {
      if (player.playing) player.stop();
      startVideo(from);
      return;
    }
    // Until the base video is here (fetched when the model was chosen), this play is JPEG frames.
    log.add('The base video is still on its way: JPEG frames this time, video from the next play');
  }
  showDelivery('JPEG');
  player.start({ fromFrame: from, frameCount: state.model.frameCount, fps: state.fps, loop: state.loop });
  showPlaying(true);
  log.add(`Playing ${state.model.name} from frame ${from} at ${state.fps} FPS (${modeName(state.mode)})`);
}

function stop() {
  if (state.video !== null) {
    stopVideo();
    log.add(`Stopped at frame ${state.frame}`);
  }
  if (player.playing) {
    player.stop();
    log.add(`Stopped at frame ${state.frame}`);
  }
}

function showPlaying(playing) {
  ui.play.classList.toggle('is-playing', playing);
  ui.playLabel.textContent = playing ? 'Stop' : 'Play';
}

/** Frames asked for by the slider or the keys while stopped: only the latest one matters. */
const scrub = { busy: false, wanted: null };

async function showFrame(frameId) {
  if (!canRequest()) return;
  scrub.wanted = frameId;
  if (scrub.busy) return;
  scrub.busy = true;
  try {
    while (scrub.wanted !== null && state.model !== null) {
      const wanted = scrub.wanted;
      scrub.wanted = null;
      try {
        present(await fetchFrame(wanted), wanted);
      } catch (error) {
        reportError(error, `frame ${wanted}`);
        break;
      }
    }
  } finally {
    scrub.busy = false;
  }
}

function singleFrame() {
  stop();
  stopLive();
  const frameId = Number(ui.frameSlider.value);
  log.add(`Single frame ${frameId} (${modeName(state.mode)})`);
  showFrame(frameId);
}

function step(delta) {
  if (state.model === null) return;
  stop();
  const count = state.model.frameCount;
  showFrame((Number(ui.frameSlider.value) + delta + count) % count);
}

/** Go to a frame: playing on from there, or showing it. */
function seek(frameId) {
  if (player.playing || state.video !== null) {
    state.frame = frameId;
    play();
  } else {
    showFrame(frameId);
  }
}

function canRequest() {
  return connection.isOpen && state.model !== null;
}

// --- models ------------------------------------------------------------------------------------

async function loadModels() {
  ui.model.placeholder = 'Loading models…';
  try {
    const reply = await connection.requestJson('list_models');
    const names = reply.models ?? [];
    ui.modelOptions.replaceChildren(...names.map((name) => new Option(name, name)));
    ui.model.disabled = false;
    ui.model.placeholder = names.length ? 'Choose a model' : 'No models loaded';
    log.add(`${reply.count ?? names.length} model(s): ${names.join(', ') || 'none'}`, 'ok');
    const keep = state.model !== null && names.includes(state.model.name) ? state.model.name : names[0];
    if (keep !== undefined) await selectModel(keep);
    if (state.resume && canRequest()) {
      log.add('Resuming playback');
      play();
    }
    state.resume = false;
  } catch (error) {
    reportError(error, 'list_models');
  }
}

async function selectModel(name) {
  stop();
  stopLive();
  ui.model.value = name;
  try {
    const meta = await connection.requestJson('get_metadata', { model_name: name });
    const previous = state.model?.name;
    state.model = {
      name: meta.model_name, frameCount: meta.frame_count, fps: meta.fps, width: meta.width, height: meta.height,
      engine: meta.engine ?? '—', hasAudio: Boolean(meta.has_audio), audioSeconds: meta.audio_duration_s,
    };
    if (previous !== name) {
      state.frame = 0;
      state.baseFrames = new BaseFrameCache(loadBaseFrame.bind(null, name));
    }
    showModel();
    log.add(`Model ${name}: ${meta.frame_count} frames, ${meta.fps} fps, ${meta.width}×${meta.height}`, 'ok');
    if (connection.protocol === 'v2' && state.videoCodecs.length > 0) {
      // Fetched ahead of Play; a failure is reported when Play needs it.
      baseVideo(state.model, state.videoCodecs[0]).catch(() => {});
    }
    loadAudio(state.model);
    await showFrame(Math.min(state.frame, state.model.frameCount - 1));
  } catch (error) {
    state.model = null;
    audio.clear();
    showModel();
    reportError(error, `model ${name}`);
  }
}

async function loadBaseFrame(modelName, frameId) {
  const reply = await connection.requestJson('get_video_frame', { model_name: modelName, frame_id: frameId });
  return base64Bytes(reply.image_base64);
}

function showModel() {
  const model = state.model;
  const ready = model !== null && connection.isOpen;
  ui.play.disabled = ui.single.disabled = ui.frameSlider.disabled = !ready;
  ui.mic.disabled = !ready || connection.protocol !== 'v2';
  ui.metaFrames.textContent = model ? String(model.frameCount) : '—';
  ui.metaFps.textContent = model ? String(model.fps) : '—';
  ui.metaSize.textContent = model ? `${model.width} × ${model.height}` : '—';
  ui.metaEngine.textContent = model ? model.engine : '—';
  if (model === null) showAudio('—');
  ui.frameSlider.max = String(model ? model.frameCount - 1 : 0);
  ui.frameSlider.value = String(state.frame);
  showFramePosition();
  if (model) renderer.setSize(model.width, model.height);
}

/** The package's audio, if the proxy serves it (see docs/browser-client.md, "Audio"). */
async function loadAudio(model) {
  audio.clear();
  showAudio(model.hasAudio ? 'loading…' : 'none in this package');
  if (!model.hasAudio) return;
  try {
    const reply = await connection.requestJson('get_audio', { model_name: model.name });
    if (state.model?.name !== model.name) return;
    audio.load(base64Bytes(reply.audio_base64));
    showAudio(`${(reply.duration_s ?? model.audioSeconds ?? 0).toFixed(1)} s, plays in sync`);
    log.add(`Audio of ${model.name} loaded (${formatBytes(reply.size ?? 0)})`, 'ok');
    resolved('audio');
  } catch (error) {
    if (state.model?.name !== model.name) return;
    // A proxy that predates get_audio answers "unknown message type"; that is no failure.
    const unsupported = error instanceof ServerError
      && (error.code === 'UNIMPLEMENTED' || /unknown message type/.test(error.message));
    if (unsupported) {
      showAudio('not served by this proxy; frames play silently');
      log.add('This proxy does not serve package audio; frames play without sound', 'warn');
    } else {
      showAudio('unavailable');
      reportError(error, 'audio', 'audio');
    }
  }
}

function showAudio(text) {
  ui.metaAudio.textContent = text;
  showSound();
}

function showSound() {
  const on = ui.sound.getAttribute('aria-pressed') === 'true';
  ui.sound.disabled = !audio.available;
  ui.sound.textContent = !audio.available ? 'No audio' : on ? 'Sound on' : 'Sound off';
}

// --- video output ------------------------------------------------------------------------------

/** Video needs v2, WebCodecs for one of the server's codecs, and model frames at 1:1 speed. */
function videoPossible() {
  return connection.protocol === 'v2' && state.videoCodecs.length > 0 && state.fps === state.model.fps;
}

function showDelivery(text) {
  ui.badgeDelivery.textContent = text;
}

/** The model's base video in `codec`, decoded frame by frame as the session needs them. */
function baseVideo(model, codec) {
  const key = `${model.name}/${codec}`;
  let entry = state.baseVideos.get(key);
  if (entry === undefined) {
    entry = fetchBaseVideo(model.name, codec).then(({ file, size }) => {
      log.add(`Base video of ${model.name}: ${CODEC_NAMES[codec]}, ${formatBytes(size)}, fetched once`, 'ok');
      state.baseReady.add(key);
      return file;
    });
    entry.catch(() => state.baseVideos.delete(key));
    state.baseVideos.set(key, entry);
  }
  return entry;
}

/** Play the model's own audio track as a video session (server-paced), from frame `from`, once
 * the base video of the codec the server prefers among ours is here (fetched when the model was
 * chosen, usually), so the first chunks are not held back waiting for it. */
async function startVideo(from) {
  stopVideo();
  const model = state.model;
  const pending = { session: null, model, output: null, starting: true };
  state.video = pending;
  showPlaying(true);
  try {
    await baseVideo(model, state.videoCodecs[0]);
  } catch (error) {
    if (state.video !== pending) return;
    state.video = null;
    showPlaying(false);
    reportError(error, 'base video');
    return;
  }
  if (state.video !== pending || !canRequest()) return;
  openVideoSession(from, model);
}

function openVideoSession(from, model) {
  // Half a second of chunks may be on their way; each one shown returns its credit.
  const credits = Math.max(1, Math.ceil(model.fps / 2));
  const session = connection.openSession({
    modelName: model.name, startFrameId: from, outputMode: state.mode, credits,
    videoCodecs: state.videoCodecs, play: true,
  });
  const video = { session, model, output: null, starting: false };
  state.video = video;
  video.output = videoOutput(session, model, {
    paced: true,
    show: (crop, picture, chunk) => {
      if (state.video !== video) return;
      present({ frameId: chunk.frameId, image: crop, base: picture, bounds: chunk.bounds }, chunk.frameId);
      audio.follow(chunk.frameId, model.fps, model.fps);
    },
    failed: (error, context) => {
      if (state.video !== video) return;
      reportError(error, context);
      if (context === 'base video') stopVideo();
    },
  });
  session.addEventListener('frame', (event) => {
    // No codec in common: the server sends JPEG frames instead.
    const message = event.detail;
    if (state.video !== video) return;
    showDelivery('JPEG (no common codec)');
    video.chain = (video.chain ?? Promise.resolve()).then(() => showSessionFrame(message, model))
      .catch((error) => reportError(error, 'frame'))
      .finally(() => session.grant(1));
  });
  session.addEventListener('error', (event) => reportError(event.detail, 'video session'));
  session.addEventListener('end', (event) => {
    const { code, message } = event.detail;
    video.output.close();
    if (state.video !== video) return;
    state.video = null;
    if (connection.socket === null) {
      // The connection dropped: the statechange that follows decides whether to play on.
      state.videoCut = true;
      showPlaying(false);
      return;
    }
    if (code === 'OK' && state.loop) {
      startVideo(0);
      return;
    }
    audio.pause();
    showPlaying(false);
    if (code === 'OK') log.add('Reached the last frame');
    else if (code !== 'CANCELLED') reportError(new ServerError(code, message || 'the video session ended'), 'video session');
  });
  showPlaying(true);
  log.add(`Playing ${model.name} from frame ${from} at ${model.fps} FPS (video session, paced by the server)`);
}

/**
 * A session's video output, for playback and the live microphone mode alike: the player decodes the
 * chunks, the base video of the codec the server chose (fetched once per model) supplies the frame
 * under each crop, and `show` draws them. `failed` hears of errors ('base video', 'video frame').
 * @returns {{close: () => void}}
 */
function videoOutput(session, model, { paced, show, failed }) {
  let base = null;
  let frames = null;
  const player = new VideoSessionPlayer({
    session,
    paced,
    base: { frame: (frameId) => base.then((decoded) => decoded.frame(frameId)) },
    present: show,
  });
  session.addEventListener('video_config', (event) => {
    const { codec, codecString } = event.detail;
    if (base !== null) return;
    base = baseVideo(model, codec).then((file) => {
      frames = new BaseFrames(file);
      return frames;
    });
    base.catch((error) => failed(error, 'base video'));
    showDelivery(`video ${CODEC_NAMES[codec]}`);
    log.add(`Video output: ${CODEC_NAMES[codec]} (${codecString}) from the server`, 'ok');
  });
  player.addEventListener('keyframe_request', () => log.add('Video: a chunk was lost; asked for a key frame', 'warn'));
  player.addEventListener('error', (event) => failed(event.detail, 'video frame'));
  return {
    close() {
      player.close();
      frames?.close();
    },
  };
}

async function showSessionFrame(message, model) {
  const [image, baseJpeg] = await Promise.all([
    decodeJpeg(message.image),
    message.outputMode === 'face_crop' ? state.baseFrames.get(message.frameId) : null,
  ]);
  const base = baseJpeg === null ? null : await decodeJpeg(baseJpeg);
  present({ frameId: message.frameId, image, base, bounds: message.bounds }, message.frameId);
  audio.follow(message.frameId, model.fps, model.fps);
}

function stopVideo() {
  const video = state.video;
  if (video === null) return;
  state.video = null;
  video.session?.cancel();
  video.output?.close();
  audio.pause();
  showPlaying(false);
}

// --- live microphone ---------------------------------------------------------------------------

async function startLive() {
  if (!canRequest() || state.live !== null) return;
  if (connection.protocol !== 'v2') {
    showMicMessage('Live microphone mode needs the lipsync.v2 protocol; this connection speaks v1.');
    return;
  }
  stop();
  const model = state.model;
  const live = {
    session: null, microphone: null, output: null, stopping: false, startedAt: null, chain: Promise.resolve(),
  };
  state.live = live;
  showLive();
  try {
    live.microphone = await Microphone.open((chunk) => {
      if (live.session === null || !live.session.open) return;
      // The first chunk ends now and started one chunk earlier: the session's audio time zero.
      live.startedAt ??= performance.now() - (chunk.length * 1000) / SAMPLE_RATE;
      live.session.sendAudio(chunk);
    });
  } catch (error) {
    state.live = null;
    showLive();
    showMicMessage(error instanceof MicrophoneError ? error.message : String(error));
    log.add(`Microphone: ${error.message}`, 'error');
    return;
  }
  if (state.live !== live || !connection.isOpen) {
    live.microphone.close();
    return;
  }
  showMicMessage(null);
  // Video output as for playback, once the base video is here (fetched when the model was chosen).
  const codec = state.videoCodecs[0];
  const video = codec !== undefined && state.baseReady.has(`${model.name}/${codec}`);
  if (codec !== undefined && !video) {
    log.add('The base video is still on its way: JPEG frames this time, video from the next session');
  }
  // Half a second of frames may be on their way at once; each one shown returns its credit.
  const credits = Math.max(1, Math.ceil(model.fps / 2));
  try {
    live.session = connection.openSession({
      modelName: model.name, startFrameId: state.frame, outputMode: state.mode, credits,
      videoCodecs: video ? state.videoCodecs : [],
    });
  } catch (error) {
    live.microphone.close();
    state.live = null;
    showLive();
    reportError(error, 'microphone session');
    return;
  }
  log.add(`Live: streaming ${live.microphone.label} to ${model.name} (PCM16, 16 kHz)`, 'ok');
  const session = live.session;
  showDelivery('JPEG');
  if (video) {
    live.output = videoOutput(session, model, {
      // A picture waits for nothing: the microphone already set the pace.
      paced: false,
      show: (crop, picture, chunk) => {
        if (state.live !== live) return;
        const { frameId, bounds } = chunk;
        presentLive(live, { frameId, image: crop, base: picture, bounds, requestedAt: performance.now() }, chunk);
      },
      failed: (error, context) => {
        if (state.live !== live) return;
        reportError(error, `live ${context}`);
        if (context === 'base video') stopLive();
      },
    });
  }
  session.addEventListener('frame', (event) => {
    const message = event.detail;
    if (video) showDelivery('JPEG (no common codec)');
    // Decoding is asynchronous; the chain keeps frames in the order they came.
    live.chain = live.chain.then(() => showLiveFrame(live, message)).catch((error) => reportError(error, 'live frame'));
  });
  session.addEventListener('error', (event) => reportError(event.detail, 'live session'));
  session.addEventListener('end', (event) => {
    const { code, message } = event.detail;
    live.output?.close();
    if (code === 'OK' || live.stopping) log.add('Live session ended', 'info');
    else reportError(new ServerError(code, message || 'the live session ended'), 'live session');
    live.microphone?.close();
    if (state.live === live) state.live = null;
    showLive();
  });
}

async function showLiveFrame(live, message) {
  const requestedAt = performance.now();
  const [image, baseJpeg] = await Promise.all([
    decodeJpeg(message.image),
    message.outputMode === 'face_crop' ? state.baseFrames.get(message.frameId) : null,
  ]);
  const base = baseJpeg === null ? null : await decodeJpeg(baseJpeg);
  presentLive(live, { frameId: message.frameId, image, base, bounds: message.bounds, requestedAt }, message);
  live.session.grant(1);
}

/** Show a live frame, JPEG or video; its latency runs from the capture of its audio to now. */
function presentLive(live, frame, message) {
  if (live.startedAt !== null) latencies.add(performance.now() - (live.startedAt + message.audioTimeMs));
  if (message.timings) noteTimings(message.timings);
  present(frame, message.frameId);
}

/** Stop the microphone; the frames of the audio already sent still come, then the session ends. */
function stopLive() {
  const live = state.live;
  if (live === null || live.stopping) return;
  live.stopping = true;
  live.microphone?.close();
  live.microphone = null;
  if (live.session?.open && connection.isOpen) {
    live.session.end();
    log.add('Live: microphone off, finishing the frames of what was said');
  } else {
    state.live = null;
  }
  showLive();
}

function showLive() {
  const live = state.live;
  ui.mic.setAttribute('aria-pressed', String(live !== null && !live.stopping));
  ui.mic.textContent = live === null ? 'Microphone' : live.stopping ? 'Finishing…' : 'Stop microphone';
  ui.mic.classList.toggle('is-live', live !== null && !live.stopping);
  ui.badgeLive.hidden = live === null;
}

function showMicMessage(text) {
  ui.micMessage.hidden = text === null;
  ui.micMessage.textContent = text ?? '';
}

// --- connection --------------------------------------------------------------------------------

connection.addEventListener('statechange', (event) => {
  const { state: now, protocol, attempt, delayMs } = event.detail;
  ui.status.dataset.state = now;
  ui.architecture.dataset.state = now;
  const text = {
    [State.OPEN]: `Connected · ${protocol === 'v2' ? 'lipsync.v2' : 'v1 (seed format)'}`,
    [State.CONNECTING]: 'Connecting…',
    [State.RECONNECTING]: delayMs === null
      ? `Reconnecting (attempt ${attempt})…`
      : `Reconnecting in ${(delayMs / 1000).toFixed(1)} s (attempt ${attempt})`,
    [State.DISCONNECTED]: 'Disconnected',
  }[now];
  ui.statusText.textContent = text;
  ui.connect.textContent = now === State.DISCONNECTED ? 'Connect' : 'Disconnect';
  ui.archLink.textContent = now === State.OPEN ? `WebSocket /ws · ${protocol === 'v2' ? 'lipsync.v2' : 'v1'}` : 'WebSocket /ws';
  if (now !== State.OPEN) {
    // Playing when the connection dropped: play on once it is back.
    state.resume ||= (player.playing || state.video !== null || state.videoCut) && now === State.RECONNECTING;
    state.videoCut = false;
    player.stop('stopped');
    if (state.video !== null) {
      const { output } = state.video;
      state.video = null;
      output?.close();
      showPlaying(false);
    }
    ui.model.disabled = true;
  }
  showModel();
});

connection.addEventListener('open', (event) => {
  log.add(`Connected to ${connection.url} (${event.detail.protocol === 'v2' ? 'lipsync.v2' : 'v1, the seed format'})`, 'ok');
  loadModels();
});

connection.addEventListener('close', (event) => {
  const { code, opened } = event.detail;
  log.add(opened ? `Connection lost (code ${code}); reconnecting` : `Cannot reach ${connection.url}; retrying`, 'warn');
});

connection.addEventListener('notice', (event) => log.add(`Proxy: ${event.detail.message}`, 'warn'));

function connect() {
  const url = ui.url.value.trim();
  log.add(`Connecting to ${url} (${ui.protocol.value === 'auto' ? 'v2, v1 fallback' : ui.protocol.value})`);
  connection.connect(url, ui.protocol.value);
}

// --- errors ------------------------------------------------------------------------------------

/**
 * Show an error in the banner until it is dismissed or what it reported works again: `cause` names
 * what that is ('frames': a frame shown; 'audio': the package's audio loaded).
 */
function reportError(error, context, cause = 'frames') {
  if (error instanceof ConnectionLost) {
    // The connection's state and the log already say so; the request is simply not answered.
    log.add(`${context}: not answered (${error.message})`, 'warn');
    return;
  }
  state.metrics.errors += 1;
  const code = error instanceof ServerError ? error.code : 'ERROR';
  const message = error?.message ?? String(error);
  ui.errorCode.textContent = code;
  ui.errorText.textContent = `${message} (${context})`;
  ui.banner.hidden = false;
  ui.banner.dataset.cause = cause;
  state.errorAt = performance.now();
  log.add(`${context}: ${code}: ${message}`, 'error');
}

/** What an error in the banner reported works again: the banner goes. */
function resolved(cause) {
  if (ui.banner.hidden || ui.banner.dataset.cause !== cause) return;
  ui.banner.hidden = true;
  log.add(`${ui.errorCode.textContent} resolved: ${cause === 'frames' ? 'frames arrive' : 'audio loaded'}`, 'ok');
}

// --- metrics -----------------------------------------------------------------------------------

let lastBytes = { at: performance.now(), bytesIn: 0 };
let chartVersion = -1;

function refreshMetrics() {
  const { metrics } = state;
  ui.latency.textContent = formatMs(latencies.last);
  ui.p50.textContent = formatMs(latencies.percentile(50));
  ui.p95.textContent = formatMs(latencies.percentile(95));
  ui.fps.textContent = shownRate.rate().toFixed(1);
  ui.target.textContent = String(state.fps);
  ui.frames.textContent = String(metrics.frames);
  ui.late.textContent = String(player.counters.late - metrics.lateBase);
  ui.dropped.textContent = String(player.counters.dropped - metrics.droppedBase);
  ui.dataIn.textContent = formatBytes(connection.bytesIn);
  ui.dataOut.textContent = formatBytes(connection.bytesOut);
  const now = performance.now();
  if (now - lastBytes.at >= 1000) {
    const perSecond = ((connection.bytesIn - lastBytes.bytesIn) * 1000) / (now - lastBytes.at);
    ui.rate.textContent = formatBytes(Math.max(0, Math.round(perSecond)));
    ui.bitrate.textContent = String(Math.max(0, Math.round((perSecond * 8) / 1000)));
    lastBytes = { at: now, bytesIn: connection.bytesIn };
  }
  ui.server.textContent = formatMs(metrics.serverMs);
  ui.batch.textContent = metrics.batch === null ? '—' : String(metrics.batch);
  ui.inflight.textContent = String(state.inflight);
  ui.errors.textContent = String(metrics.errors);
  const version = latencies.values.length + (latencies.last ?? 0);
  if (version !== chartVersion) {
    chartVersion = version;
    chart.draw(latencies.values, latencies.percentile(50), latencies.percentile(95));
  }
}

function resetMetrics() {
  latencies.clear();
  shownRate.clear();
  connection.bytesIn = connection.bytesOut = 0;
  lastBytes = { at: performance.now(), bytesIn: 0 };
  Object.assign(state.metrics, {
    frames: 0, errors: 0, serverMs: null, batch: null,
    lateBase: player.counters.late, droppedBase: player.counters.dropped,
  });
  refreshMetrics();
}

// --- controls ----------------------------------------------------------------------------------

function modeName(mode) {
  return mode === 'face_crop' ? 'face crop' : 'full frame';
}

ui.connectForm.addEventListener('submit', (event) => {
  event.preventDefault();
  if (connection.state === State.DISCONNECTED) connect();
  else {
    stopLive();
    connection.disconnect();
    log.add('Disconnected');
  }
});

ui.protocol.addEventListener('change', () => {
  if (connection.state !== State.DISCONNECTED) connect();
});

ui.play.addEventListener('click', () => (player.playing || state.video !== null ? stop() : play()));
ui.single.addEventListener('click', singleFrame);

ui.loop.addEventListener('change', () => {
  state.loop = ui.loop.checked;
  player.setLoop(state.loop);
});

ui.fpsSlider.addEventListener('input', () => {
  state.fps = Number(ui.fpsSlider.value);
  ui.fpsOutput.textContent = `${state.fps} FPS`;
  player.setFps(state.fps);
  // A video session plays at the model's fps; another speed plays JPEG frames from here.
  if (state.video !== null && !videoPossible()) play();
});

ui.frameSlider.addEventListener('input', () => {
  showFramePosition();
  if (!player.playing) showFrame(Number(ui.frameSlider.value));
});

ui.frameSlider.addEventListener('change', () => {
  // While playing, letting go of the slider seeks there.
  if (player.playing) seek(Number(ui.frameSlider.value));
});

for (const input of ui.modeInputs) {
  input.addEventListener('change', () => setMode(input.value));
}

function setMode(mode) {
  state.mode = mode;
  ui.badgeMode.textContent = modeName(mode);
  for (const input of ui.modeInputs) input.checked = input.value === mode;
  log.add(`Output: ${modeName(mode)}`);
  if (player.playing) play();
  else if (state.live === null && state.video === null) showFrame(state.frame);
}

ui.sound.addEventListener('click', () => {
  const on = ui.sound.getAttribute('aria-pressed') !== 'true';
  ui.sound.setAttribute('aria-pressed', String(on));
  audio.setEnabled(on);
  showSound();
});

ui.mic.addEventListener('click', () => (state.live === null ? startLive() : stopLive()));

/** A model name typed (committed with Enter or by leaving the field) or picked from the list. */
function chooseModel() {
  const name = ui.model.value.trim();
  if (name && connection.isOpen && name !== state.model?.name) selectModel(name);
}

ui.model.addEventListener('change', chooseModel);
ui.model.addEventListener('input', () => {
  const picked = [...ui.modelOptions.options].some((option) => option.value === ui.model.value);
  if (picked) chooseModel();
});

$('error-dismiss').addEventListener('click', () => {
  ui.banner.hidden = true;
});
$('metrics-reset').addEventListener('click', resetMetrics);
$('log-clear').addEventListener('click', () => log.clear());

audio.onblocked = (error) => log.add(`The browser did not start the audio: ${error.message}`, 'warn');

/** Keys that act on the player when focus is not in a field or on a control that uses them. */
document.addEventListener('keydown', (event) => {
  if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey) return;
  const target = event.target;
  if (target instanceof HTMLElement && target.closest('input, select, textarea, button, [contenteditable="true"]')) return;
  const actions = {
    ' ': () => ui.play.click(),
    k: () => ui.play.click(),
    ArrowLeft: () => step(-1),
    ArrowRight: () => step(1),
    Home: () => seek(0),
    l: () => ui.loop.click(),
    s: () => ui.sound.click(),
    c: () => setMode(state.mode === 'face_crop' ? 'full_frame' : 'face_crop'),
  };
  const action = actions[event.key.length === 1 ? event.key.toLowerCase() : event.key];
  if (action === undefined) return;
  event.preventDefault();
  action();
});

// --- start -------------------------------------------------------------------------------------

ui.url.value = defaultSocketUrl(window.location);
setInterval(refreshMetrics, 250);
refreshMetrics();
const videoWanted = new URLSearchParams(window.location.search).get('video') !== 'off';
(videoWanted ? decodableCodecs() : Promise.resolve([])).then((codecs) => {
  state.videoCodecs = codecs;
  log.add(codecs.length
    ? `WebCodecs decodes ${codecs.map((codec) => CODEC_NAMES[codec]).join(', ')}: playback and the microphone use video output on v2`
    : 'Playback and the microphone use JPEG frames (no WebCodecs video decoder, or ?video=off)');
}).finally(connect);
