/**
 * rpm's version order, shared by the lock (which closure to pin) and the node (whether the
 * version installed there is older than the pin): both must judge exactly as rpm does.
 */

/** rpm's rpmvercmp: alternating runs of digits and letters, ~ sorts before everything, ^ after the end. */
export function rpmvercmp(a: string, b: string): number {
  if (a === b) return 0
  let i = 0
  let j = 0
  const alnum = (c: string | undefined) => c !== undefined && /[A-Za-z0-9]/.test(c)
  while (i < a.length || j < b.length) {
    while (i < a.length && !alnum(a[i]) && a[i] !== '~' && a[i] !== '^') i++
    while (j < b.length && !alnum(b[j]) && b[j] !== '~' && b[j] !== '^') j++
    if (a[i] === '~' || b[j] === '~') {
      if (a[i] !== '~') return 1
      if (b[j] !== '~') return -1
      i++
      j++
      continue
    }
    if (a[i] === '^' || b[j] === '^') {
      if (i >= a.length) return -1
      if (j >= b.length) return 1
      if (a[i] !== '^') return 1
      if (b[j] !== '^') return -1
      i++
      j++
      continue
    }
    if (i >= a.length || j >= b.length) break
    const digits = /[0-9]/.test(a[i]!)
    const run = (s: string, k: number) => {
      let e = k
      while (e < s.length && (digits ? /[0-9]/.test(s[e]!) : /[A-Za-z]/.test(s[e]!))) e++
      return e
    }
    const ei = run(a, i)
    const ej = run(b, j)
    let sa = a.slice(i, ei)
    let sb = b.slice(j, ej)
    if (!sb) return digits ? 1 : -1
    if (digits) {
      sa = sa.replace(/^0+/, '')
      sb = sb.replace(/^0+/, '')
      if (sa.length !== sb.length) return sa.length > sb.length ? 1 : -1
    }
    if (sa !== sb) return sa > sb ? 1 : -1
    i = ei
    j = ej
  }
  if (i >= a.length && j >= b.length) return 0
  return i >= a.length ? -1 : 1
}

const splitEvr = (evr: string): [string, string, string | undefined] => {
  const colon = evr.indexOf(':')
  const epoch = colon >= 0 ? evr.slice(0, colon) : '0'
  const rest = colon >= 0 ? evr.slice(colon + 1) : evr
  const dash = rest.lastIndexOf('-')
  return dash >= 0 ? [epoch, rest.slice(0, dash), rest.slice(dash + 1)] : [epoch, rest, undefined]
}

/** Epoch, version, then release; a release missing on either side is not compared (rpm's rule for `foo >= 1.2`). */
export function compareEvr(a: string, b: string): number {
  const [ea, va, ra] = splitEvr(a)
  const [eb, vb, rb] = splitEvr(b)
  return Number(ea) - Number(eb) || rpmvercmp(va, vb) || (ra !== undefined && rb !== undefined ? rpmvercmp(ra, rb) : 0)
}
