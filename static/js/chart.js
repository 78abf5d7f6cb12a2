/**
 * The latency chart: the last requests' latencies as a line, with the p50 and p95 as dashed rules.
 * Colours come from the canvas's CSS custom properties, so the chart follows the page's theme.
 *
 * @module chart
 */

/**
 * A round upper bound for the y axis: 10, 20, 50, 100, 200, ... above `value`.
 * @param {number} value
 * @returns {number}
 */
export function niceCeiling(value) {
  let ceiling = 10;
  for (let decade = 10; ceiling < value; decade *= 10) {
    ceiling = [decade * 2, decade * 5, decade * 10].find((step) => step >= value) ?? decade * 10;
  }
  return ceiling;
}

export class LatencyChart {
  /** @param {HTMLCanvasElement} canvas */
  constructor(canvas) {
    this.canvas = canvas;
    this.context = canvas.getContext('2d');
  }

  /**
   * @param {number[]} values latencies in ms, oldest first
   * @param {number | null} p50
   * @param {number | null} p95
   */
  draw(values, p50, p95) {
    const { canvas, context } = this;
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(canvas.clientWidth * ratio));
    const height = Math.max(1, Math.round(canvas.clientHeight * ratio));
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    const style = getComputedStyle(canvas);
    const colour = (name) => style.getPropertyValue(name).trim();
    context.clearRect(0, 0, width, height);
    const pad = 4 * ratio;
    const font = 11 * ratio;
    context.font = `${font}px system-ui, sans-serif`;
    context.textBaseline = 'top';
    context.fillStyle = colour('--chart-text');
    if (values.length === 0) {
      context.fillText('No requests yet', pad, pad);
      return;
    }
    const top = niceCeiling(Math.max(...values, p95 ?? 0));
    const y = (ms) => height - pad - (Math.min(ms, top) / top) * (height - 2 * pad - font);
    const step = (width - 2 * pad) / Math.max(1, values.length - 1);

    context.lineWidth = ratio;
    context.setLineDash([4 * ratio, 3 * ratio]);
    for (const [value, name] of [[p50, '--chart-p50'], [p95, '--chart-p95']]) {
      if (value === null) continue;
      context.strokeStyle = colour(name);
      context.beginPath();
      context.moveTo(pad, y(value));
      context.lineTo(width - pad, y(value));
      context.stroke();
    }
    context.setLineDash([]);

    context.strokeStyle = colour('--chart-line');
    context.lineWidth = 1.5 * ratio;
    context.lineJoin = 'round';
    context.beginPath();
    values.forEach((value, index) => {
      const x = pad + index * step;
      if (index === 0) context.moveTo(x, y(value));
      else context.lineTo(x, y(value));
    });
    context.stroke();

    context.fillStyle = colour('--chart-text');
    context.fillText(`${top} ms`, pad, pad);
  }
}
