/**
 * The activity log: what the page did and what the proxy said, newest last, time-stamped.
 * Per-frame events stay out of it (the metrics show them), so that it stays readable and a screen
 * reader announcing it is not flooded.
 *
 * @module activity-log
 */

/** Entries kept; older ones are removed. */
const MAX_ENTRIES = 300;

export class ActivityLog {
  /** @param {HTMLOListElement} list */
  constructor(list) {
    this.list = list;
  }

  /**
   * @param {string} message
   * @param {'info' | 'ok' | 'warn' | 'error'} [level]
   */
  add(message, level = 'info') {
    const item = document.createElement('li');
    item.className = `log-${level}`;
    const time = document.createElement('time');
    const now = new Date();
    time.dateTime = now.toISOString();
    time.textContent = now.toLocaleTimeString([], { hour12: false });
    const text = document.createElement('span');
    text.textContent = message;
    item.append(time, text);
    const atBottom = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 8;
    this.list.append(item);
    while (this.list.children.length > MAX_ENTRIES) this.list.firstElementChild.remove();
    // Follow new entries unless the reader has scrolled up to read older ones.
    if (atBottom) this.list.scrollTop = this.list.scrollHeight;
  }

  clear() {
    this.list.replaceChildren();
  }
}
