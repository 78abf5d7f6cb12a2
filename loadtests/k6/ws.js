// k6 WebSocket load through the lipsync proxy, in the seed's v1 binary protocol (what existing
// clients and the browser's v1 mode send). Each virtual user holds one connection for SESSION_S
// seconds with DEPTH requests outstanding (v1 replies come back in request order), then reconnects.
//
//   .venv/bin/k6 run loadtests/k6/ws.js -e WS_URL=ws://127.0.0.1:8086/ws -e VUS=8 -e HOLD_S=30
//
// Environment: WS_URL, MODEL (demo), FRAMES (300), DEPTH (1), VUS (8), RAMP_S (10), HOLD_S (30),
// SESSION_S (10), P99_MS (100: the threshold), INSECURE (1 accepts a self-signed wss certificate).
// Thresholds fail the run (exit status 99): p99 frame latency, the share of good replies, and at
// least one frame per virtual user.
import { WebSocket } from 'k6/experimental/websockets';
import { Counter, Rate, Trend } from 'k6/metrics';

const URL = __ENV.WS_URL || 'ws://127.0.0.1:8086/ws';
const MODEL = __ENV.MODEL || 'demo';
const FRAMES = parseInt(__ENV.FRAMES || '300', 10);
const DEPTH = parseInt(__ENV.DEPTH || '1', 10);
const VUS = parseInt(__ENV.VUS || '8', 10);
const SESSION_S = parseFloat(__ENV.SESSION_S || '10');
const P99_MS = parseFloat(__ENV.P99_MS || '100');

const frameLatency = new Trend('frame_latency', true);
const frames = new Counter('frames');
const frameErrors = new Counter('frame_errors');
const goodReplies = new Rate('good_replies');

export const options = {
  insecureSkipTLSVerify: __ENV.INSECURE === '1',
  scenarios: {
    frames: {
      executor: 'ramping-vus',
      startVUs: 1,
      stages: [
        { duration: `${__ENV.RAMP_S || 10}s`, target: VUS },
        { duration: `${__ENV.HOLD_S || 30}s`, target: VUS },
      ],
      gracefulRampDown: '2s',
      gracefulStop: '2s',
    },
  },
  thresholds: {
    frame_latency: [`p(99)<${P99_MS}`],
    good_replies: ['rate>0.999'],
    frames: [`count>=${VUS}`],
  },
};

// The v1 request: u8 name length, the name (ASCII here), u32 frame id little-endian.
function request(frameId) {
  const buffer = new ArrayBuffer(1 + MODEL.length + 4);
  const view = new DataView(buffer);
  view.setUint8(0, MODEL.length);
  for (let i = 0; i < MODEL.length; i++) view.setUint8(1 + i, MODEL.charCodeAt(i));
  view.setUint32(1 + MODEL.length, frameId, true);
  return buffer;
}

function isJpeg(data) {
  const bytes = new Uint8Array(data);
  const n = bytes.length;
  return n >= 4 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[n - 2] === 0xff && bytes[n - 1] === 0xd9;
}

export default function () {
  const ws = new WebSocket(URL);
  ws.binaryType = 'arraybuffer';
  const sentAt = []; // send times of the outstanding requests, oldest first
  let frameId = (__VU * 37) % FRAMES;
  let closing = false;

  function send() {
    sentAt.push(Date.now());
    ws.send(request(frameId));
    frameId = (frameId + 1) % FRAMES;
  }

  ws.onopen = () => {
    for (let i = 0; i < DEPTH; i++) send();
    setTimeout(() => {
      closing = true;
      ws.close();
    }, SESSION_S * 1000);
  };
  ws.onmessage = (event) => {
    const started = sentAt.shift();
    const ok = typeof event.data !== 'string' && isJpeg(event.data);
    goodReplies.add(ok);
    if (ok) {
      frameLatency.add(Date.now() - started);
      frames.add(1);
    } else {
      frameErrors.add(1);
    }
    if (!closing) send();
  };
  ws.onerror = () => {
    goodReplies.add(false);
    frameErrors.add(1);
  };
}
