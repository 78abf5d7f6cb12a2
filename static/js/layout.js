/**
 * The client's markup. Both entry pages (`index.html` and the seed's `grpc-lipsync-client.html`)
 * are shells that load `app.js`, which puts this into their `#app`; so the two URLs serve one
 * client and there is one copy of it. Static text only: nothing here is built from data.
 *
 * @module layout
 */

const MARKUP = `
<a class="skip-link" href="#player">Skip to the player</a>
<header class="topbar">
  <div class="brand">
    <svg class="brand-mark" viewBox="0 0 32 32" aria-hidden="true">
      <rect width="32" height="32" rx="8"></rect>
      <path d="M8 18c3 4 13 4 16 0" fill="none" stroke-width="2.6" stroke-linecap="round"></path>
      <circle cx="11.5" cy="12" r="2"></circle><circle cx="20.5" cy="12" r="2"></circle>
    </svg>
    <span class="brand-name">Lip-sync</span>
    <span class="brand-sub">real-time client</span>
  </div>
  <div id="connection-status" class="status" data-state="disconnected" role="status" aria-live="polite">
    <span class="status-dot" aria-hidden="true"></span>
    <span id="connection-text">Disconnected</span>
  </div>
</header>

<div id="error-banner" class="banner" role="alert" hidden>
  <span class="banner-icon" aria-hidden="true">!</span>
  <p><strong id="error-code"></strong> <span id="error-text"></span></p>
  <button id="error-dismiss" class="icon-button" type="button" aria-label="Dismiss the error">×</button>
</div>

<main class="layout">
  <section id="player" class="card player" aria-labelledby="player-title" tabindex="-1">
    <h2 id="player-title" class="visually-hidden">Player</h2>
    <div class="screen">
      <canvas id="frame-canvas" width="1280" height="720" role="img" aria-label="Lip-synced video frame"></canvas>
      <p id="screen-empty" class="screen-empty">Connect and choose a model to see its frames.</p>
      <div class="screen-badges" aria-hidden="true">
        <span id="badge-frame" class="badge">frame —</span>
        <span id="badge-mode" class="badge">full frame</span>
        <span id="badge-delivery" class="badge">JPEG</span>
        <span id="badge-live" class="badge badge-live" hidden>● live mic</span>
      </div>
    </div>

    <div class="transport">
      <button id="play-button" class="button primary" type="button" aria-keyshortcuts="Space" disabled>
        <span class="play-icon" aria-hidden="true"></span><span id="play-label">Play</span>
      </button>
      <button id="single-button" class="button" type="button" disabled>Single frame</button>
      <label class="check"><input id="loop-toggle" type="checkbox" checked> Loop</label>
      <button id="sound-button" class="button" type="button" aria-pressed="true" aria-keyshortcuts="S" disabled>No audio</button>
      <button id="mic-button" class="button" type="button" aria-pressed="false" disabled>Microphone</button>
    </div>

    <div class="sliders">
      <div class="slider">
        <label for="frame-slider">Frame</label>
        <output id="frame-output" for="frame-slider">0 / 0</output>
        <input id="frame-slider" type="range" min="0" max="0" value="0" step="1" disabled>
      </div>
      <div class="slider">
        <label for="fps-slider">Speed</label>
        <output id="fps-output" for="fps-slider">25 FPS</output>
        <input id="fps-slider" type="range" min="12" max="60" value="25" step="1">
      </div>
    </div>

    <fieldset class="segmented">
      <legend>Output</legend>
      <input id="mode-full" type="radio" name="output-mode" value="full_frame" checked>
      <label for="mode-full">Full frame</label>
      <input id="mode-crop" type="radio" name="output-mode" value="face_crop">
      <label for="mode-crop">Face crop</label>
    </fieldset>
    <p id="mic-message" class="note" role="status" hidden></p>
    <audio id="package-audio" preload="auto" hidden></audio>
  </section>

  <div class="side">
    <section class="card" aria-labelledby="connection-title">
      <h2 id="connection-title">Connection</h2>
      <form id="connect-form" class="stack">
        <label for="ws-url">Proxy WebSocket URL</label>
        <input id="ws-url" type="url" inputmode="url" spellcheck="false" autocomplete="off" required>
        <div class="row">
          <div class="grow">
            <label for="protocol-select">Protocol</label>
            <select id="protocol-select">
              <option value="auto">Auto: v2, else v1</option>
              <option value="v2">lipsync.v2</option>
              <option value="v1">v1 (seed format)</option>
            </select>
          </div>
          <button id="connect-button" class="button primary" type="submit">Connect</button>
        </div>
      </form>
    </section>

    <section class="card" aria-labelledby="model-title">
      <h2 id="model-title">Model</h2>
      <label for="model-input">Model name</label>
      <input id="model-input" list="model-options" autocomplete="off" spellcheck="false" placeholder="Loading models…" disabled>
      <datalist id="model-options"></datalist>
      <dl class="facts">
        <div><dt>Frames</dt><dd id="meta-frames">—</dd></div>
        <div><dt>FPS</dt><dd id="meta-fps">—</dd></div>
        <div><dt>Size</dt><dd id="meta-size">—</dd></div>
        <div><dt>Engine</dt><dd id="meta-engine">—</dd></div>
        <div class="wide"><dt>Audio</dt><dd id="meta-audio">—</dd></div>
      </dl>
    </section>

    <section class="card" aria-labelledby="metrics-title">
      <div class="card-head">
        <h2 id="metrics-title">Live metrics</h2>
        <button id="metrics-reset" class="link-button" type="button">Reset</button>
      </div>
      <div class="tiles">
        <div class="tile">
          <span class="tile-label">Latency</span>
          <span id="m-latency" class="tile-value">—</span>
          <span class="tile-sub">p50 <b id="m-p50">—</b> · p95 <b id="m-p95">—</b></span>
        </div>
        <div class="tile">
          <span class="tile-label">FPS</span>
          <span id="m-fps" class="tile-value">0.0</span>
          <span class="tile-sub">target <b id="m-target">25</b></span>
        </div>
        <div class="tile">
          <span class="tile-label">Frames</span>
          <span id="m-frames" class="tile-value">0</span>
          <span class="tile-sub">late <b id="m-late">0</b> · dropped <b id="m-dropped">0</b></span>
        </div>
        <div class="tile">
          <span class="tile-label">Data received</span>
          <span id="m-data-in" class="tile-value">0 B</span>
          <span class="tile-sub"><b id="m-rate">0 B</b>/s (<b id="m-bitrate">0</b> kbit/s) · sent <b id="m-data-out">0 B</b></span>
        </div>
        <div class="tile">
          <span class="tile-label">Server time</span>
          <span id="m-server" class="tile-value">—</span>
          <span class="tile-sub">batch <b id="m-batch">—</b> · in flight <b id="m-inflight">0</b></span>
        </div>
        <div class="tile">
          <span class="tile-label">Errors</span>
          <span id="m-errors" class="tile-value">0</span>
          <span class="tile-sub">since reset</span>
        </div>
      </div>
      <figure class="chart">
        <canvas id="latency-chart" role="img" aria-label="Latency of the recent requests"></canvas>
        <figcaption>Latency, last 240 frames · <span class="key key-p50">p50</span> <span class="key key-p95">p95</span></figcaption>
      </figure>
    </section>
  </div>

  <section class="card log-card" aria-labelledby="log-title">
    <div class="card-head">
      <h2 id="log-title">Activity</h2>
      <button id="log-clear" class="link-button" type="button">Clear</button>
    </div>
    <ol id="activity-log" class="log" role="log" aria-live="polite" aria-labelledby="log-title" tabindex="0"></ol>
  </section>

  <section class="card arch-card" aria-labelledby="arch-title">
    <h2 id="arch-title">Architecture</h2>
    <ol id="architecture" class="arch" data-state="disconnected">
      <li class="arch-node" data-node="browser"><strong>Browser</strong><span>this page</span></li>
      <li class="arch-link"><span id="arch-browser-link">WebSocket /ws</span></li>
      <li class="arch-node" data-node="nginx"><strong>nginx</strong><span>TLS, static files (optional)</span></li>
      <li class="arch-link"><span>ws</span></li>
      <li class="arch-node" data-node="proxy"><strong>proxy</strong><span>WebSocket ↔ gRPC</span></li>
      <li class="arch-link"><span>gRPC · Infer, Speak</span></li>
      <li class="arch-node" data-node="server"><strong>lipsync-server</strong><span>batching, JPEG</span></li>
      <li class="arch-link"><span>frames</span></li>
      <li class="arch-node" data-node="engine"><strong>engine</strong><span>UNet-328 ONNX / sprite</span></li>
    </ol>
  </section>
</main>

<footer class="footer">
  <p><span class="kbd-label">Keyboard:</span>
    <kbd>Space</kbd> play / stop · <kbd>←</kbd> <kbd>→</kbd> previous / next frame · <kbd>Home</kbd> first frame ·
    <kbd>L</kbd> loop · <kbd>S</kbd> sound · <kbd>C</kbd> face crop</p>
</footer>
`;

/**
 * Put the client's markup into `root`.
 * @param {HTMLElement} root
 */
export function renderLayout(root) {
  root.innerHTML = MARKUP;
}
