/** IPv4 addresses and CIDR blocks as numbers: parse once, compare as values. */
export interface Cidr {
  text: string
  base: number
  prefix: number
}

export function parseIPv4(text: string): number | undefined {
  const parts = text.split('.')
  if (parts.length !== 4 || !parts.every((p) => /^(0|[1-9]\d{0,2})$/.test(p) && Number(p) <= 255)) return undefined
  return parts.reduce((n, p) => n * 256 + Number(p), 0)
}

export function parseCidr(text: string): Cidr | undefined {
  const m = /^([^/]+)\/(\d{1,2})$/.exec(text.trim())
  if (!m) return undefined
  const ip = parseIPv4(m[1]!)
  const prefix = Number(m[2])
  if (ip === undefined || prefix > 32) return undefined
  const size = 2 ** (32 - prefix)
  if (ip % size !== 0) return undefined // host bits set: 10.244.1.0/16 is a typo, not a network
  return { text: text.trim(), base: ip, prefix }
}

export const cidrSize = (c: Cidr): number => 2 ** (32 - c.prefix)

export const overlaps = (a: Cidr, b: Cidr): boolean => a.base < b.base + cidrSize(b) && b.base < a.base + cidrSize(a)

/** The network an interface address belongs to (`192.0.2.2/24` -> 192.0.2.0/24). */
export function networkOf(addressCidr: string): Cidr | undefined {
  const [ip, prefix] = addressCidr.split('/')
  const n = parseIPv4(ip ?? '')
  if (n === undefined) return undefined
  const size = 2 ** (32 - Number(prefix))
  const base = Math.floor(n / size) * size
  const text = `${[24, 16, 8, 0].map((s) => Math.floor(base / 2 ** s) % 256).join('.')}/${prefix}`
  return { text, base, prefix: Number(prefix) }
}
