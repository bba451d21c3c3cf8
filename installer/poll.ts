import { KaError } from '../bundle/errors.js'
import type { Context } from './plan.js'

/**
 * The one wait loop: asks `probe` every `everyMs` until it answers undefined (done), showing
 * its last answer on the live line; past `ctx.cluster.waitMs` (by the node's clock,
 * `ctx.facts.now`) fails with `why(last, seconds)`.
 */
export async function poll(
  ctx: Context,
  everyMs: number,
  probe: () => Promise<string | undefined>,
  why: (last: string, seconds: number) => string,
): Promise<void> {
  const started = ctx.facts.now()
  const seconds = Math.round(ctx.cluster.waitMs / 1000)
  for (;;) {
    const last = await probe()
    if (last === undefined) return
    ctx.live?.waiting(`waiting ${Math.round((ctx.facts.now() - started) / 1000)}/${seconds} s: ${last}`)
    if (ctx.facts.now() - started > ctx.cluster.waitMs) throw new KaError('ESTEP', why(last, seconds))
    await new Promise((r) => setTimeout(r, everyMs))
  }
}
