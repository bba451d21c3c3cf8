import type { ServerResponse } from 'node:http'

/**
 * Requests in flight on this process's test servers (the file upstream and the registry's
 * front), and the most there were at once: what a build's connection budget is held to.
 */
export class Gauge {
  now = 0
  max = 0
  track(res: ServerResponse): void {
    this.now++
    this.max = Math.max(this.max, this.now)
    res.once('close', () => this.now--)
  }
  reset(): void {
    this.max = this.now
  }
}

export const inFlight = new Gauge()
