import { createHash, type Hash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import ssri from 'ssri'
import { KaError } from './errors.js'

const HEX = /^[0-9a-f]{64}$/

/**
 * A sha256 digest, parsed once from any of the spellings we meet at the edges
 * (`sha256-<base64>` in the lock, `sha256:<hex>` in OCI, bare hex in checksum files)
 * and compared as a value everywhere else.
 */
export class Sha256 {
  private constructor(readonly hex: string) {}

  static fromHex(hex: string): Sha256 {
    const h = hex.trim().toLowerCase()
    if (!HEX.test(h)) throw new Error(`not a sha256 hex digest: ${JSON.stringify(hex)}`)
    return new Sha256(h)
  }

  /** `sha256-<base64>` (one hash only: a lock pins exactly one). */
  static fromSri(sri: string): Sha256 {
    const parsed = ssri.parse(sri, { single: true, strict: true })
    if (parsed?.algorithm !== 'sha256') throw new Error(`not a sha256 integrity string: ${JSON.stringify(sri)}`)
    const hex = Buffer.from(parsed.digest, 'base64').toString('hex')
    if (!HEX.test(hex)) throw new Error(`not a sha256 integrity string: ${JSON.stringify(sri)}`)
    return new Sha256(hex)
  }

  /** `sha256:<hex>`, as OCI digests are written. */
  static fromOci(digest: string): Sha256 {
    const m = /^sha256:([0-9a-f]{64})$/.exec(digest)
    if (!m?.[1]) throw new Error(`not a sha256 OCI digest: ${JSON.stringify(digest)}`)
    return new Sha256(m[1])
  }

  static ofHash(hash: Hash): Sha256 {
    return new Sha256(hash.digest('hex'))
  }

  static of(data: string | Buffer): Sha256 {
    return new Sha256(createHash('sha256').update(data).digest('hex'))
  }

  static async ofFile(path: string): Promise<{ digest: Sha256; size: number }> {
    const hash = createHash('sha256')
    let size = 0
    for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
      hash.update(chunk as Buffer)
      size += (chunk as Buffer).length
    }
    return { digest: Sha256.ofHash(hash), size }
  }

  get sri(): string {
    return `sha256-${Buffer.from(this.hex, 'hex').toString('base64')}`
  }

  get oci(): string {
    return `sha256:${this.hex}`
  }

  equals(other: Sha256): boolean {
    return this.hex === other.hex
  }

  toString(): string {
    return this.oci
  }
}

export function integrityError(what: string, expected: Sha256, actual: Sha256, facts: Record<string, unknown> = {}): KaError {
  return new KaError('EINTEGRITY', `${what}: expected sha256 ${expected.hex}, got ${actual.hex}`, {
    expected: expected.oci,
    actual: actual.oci,
    ...facts,
  })
}
