import { request } from 'node:https'
import yaml from 'js-yaml'
import type { Finding } from './checks.js'
import { unitActive } from './node-state.js'
import type { Context } from './plan.js'

/** More apart than this, and tokens, certificates and leases start to fail between nodes. */
export const CLOCK_SKEW_LIMIT_S = 30

const TIME_SERVICES = ['chronyd', 'chrony', 'systemd-timesyncd', 'ntpd', 'ntp']

/** The API server a kubeconfig names (its current context's cluster, else its first). */
function serverOf(text: string | undefined): string | undefined {
  try {
    const k = yaml.load(text ?? '') as {
      'current-context'?: string
      contexts?: { name?: string; context?: { cluster?: string } }[]
      clusters?: { name?: string; cluster?: { server?: string } }[]
    }
    const cluster = k.contexts?.find((c) => c.name === k['current-context'])?.context?.cluster
    const server = (k.clusters?.find((c) => c.name === cluster) ?? k.clusters?.[0])?.cluster?.server
    return typeof server === 'string' && /^https:\/\//.test(server) ? server : undefined
  } catch {
    return undefined
  }
}

/**
 * The API server's clock, from the Date header of its answer to /livez. Every answer has
 * one, a 401 or 403 included: nothing is sent that needs trusting the server, so its
 * certificate is not checked. Undefined when it does not answer.
 */
function serverDate(server: string, timeoutMs = 5000): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = request(new URL('/livez', server), { method: 'GET', rejectUnauthorized: false, timeout: timeoutMs }, (res) => {
      res.resume()
      const date = Date.parse(String(res.headers.date ?? ''))
      resolve(Number.isNaN(date) ? undefined : date)
    })
    req.on('timeout', () => req.destroy())
    req.on('error', () => resolve(undefined))
    req.end()
  })
}

/** Doctor on a node of a running cluster: this node's clock against the API server's, with the time service it found. */
export async function clockSkewFinding(ctx: Context, kubeconfig: string): Promise<Finding | undefined> {
  const server = serverOf(await ctx.host.readText(kubeconfig))
  if (!server) return undefined
  const sent = ctx.facts.now()
  const theirs = await serverDate(server)
  if (theirs === undefined) return undefined
  // The Date header has whole seconds: compare with the middle of the exchange.
  const skew = Math.round((sent + (ctx.facts.now() - sent) / 2 - theirs) / 1000)
  const running: string[] = []
  for (const unit of TIME_SERVICES) if (await unitActive(ctx.host, unit)) running.push(unit)
  const service = running.length ? `${running.join(', ')} running` : `no time service running (looked for ${TIME_SERVICES.join(', ')})`
  if (Math.abs(skew) <= CLOCK_SKEW_LIMIT_S)
    return { level: 'ok', check: 'clock vs API server', found: `within ${CLOCK_SKEW_LIMIT_S} s of ${server}; ${service}` }
  return {
    level: 'fail',
    check: 'clock vs API server',
    found: `this node's clock is ${Math.abs(skew)} s ${skew > 0 ? 'ahead of' : 'behind'} the API server's (${server}, its Date header); ${service}`,
    fix: running.length
      ? `point ${running[0]} at the same time source as the masters (a server inside the network), then step the clock (chronyc makestep, or timedatectl set-time)`
      : 'run a time service (chronyd or systemd-timesyncd) on every node against the same server inside the network',
  }
}
