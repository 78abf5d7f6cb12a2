// k6 gRPC load straight against lipsync-server (or the benchmark backend): one unary Infer per
// iteration, each virtual user on its own connection.
//
//   .venv/bin/k6 run loadtests/k6/grpc.js -e GRPC_ADDR=127.0.0.1:50051 -e VUS=4 -e HOLD_S=30
//
// Environment: GRPC_ADDR, MODEL (demo), FRAMES (300), VUS (4), RAMP_S (10), HOLD_S (30),
// P99_MS (100: the threshold), TLS (1 for a TLS endpoint such as nginx's gRPC pass-through),
// PROTO_DIR (the protos/ folder, relative to this script). Thresholds fail the run (exit status 99):
// p99 call duration, the share of calls that returned a JPEG, and at least one call per user.
import { check } from 'k6';
import grpc from 'k6/net/grpc';
import { Counter } from 'k6/metrics';

const ADDR = __ENV.GRPC_ADDR || '127.0.0.1:50051';
const MODEL = __ENV.MODEL || 'demo';
const FRAMES = parseInt(__ENV.FRAMES || '300', 10);
const VUS = parseInt(__ENV.VUS || '4', 10);
const P99_MS = parseFloat(__ENV.P99_MS || '100');

const client = new grpc.Client();
client.load([__ENV.PROTO_DIR || '../../protos'], 'lipsync/v1/lipsync.proto');
const frames = new Counter('frames');

export const options = {
  insecureSkipTLSVerify: __ENV.TLS === '1',
  scenarios: {
    infer: {
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
    grpc_req_duration: [`p(99)<${P99_MS}`],
    checks: ['rate>0.999'],
    frames: [`count>=${VUS}`],
  },
};

export default function () {
  if (__ITER === 0) {
    client.connect(ADDR, { plaintext: __ENV.TLS !== '1', timeout: '10s' });
  }
  const frameId = (__VU * 37 + __ITER) % FRAMES;
  const response = client.invoke('lipsync.v1.LipSync/Infer', { model_name: MODEL, frame_id: frameId }, {
    timeout: '5s',
  });
  // bytes fields arrive base64-encoded: a JPEG starts FF D8, which is "/9" in base64.
  const ok = check(response, {
    'status is OK': (r) => r && r.status === grpc.StatusOK,
    'image is a JPEG': (r) => r && r.message && typeof r.message.image === 'string' && r.message.image.startsWith('/9'),
  });
  if (ok) frames.add(1);
}
