import { Readable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { PACKAGE_ENTRY_CAP, primaryPackages } from '../../builder/packages/dnf.js'
import type { RpmPackage } from '../../builder/packages/rpm.js'

/** primary.xml as createrepo_c writes it, one <package> entry per package, cut into 64 KiB chunks as a download streams it. */
const entry = (name: string, extra = '') =>
  `<package type="rpm"><name>${name}</name><arch>x86_64</arch><version epoch="0" ver="1.0" rel="1.el9"${extra}/>` +
  `<checksum type="sha256" pkgid="YES">${'a'.repeat(64)}</checksum><size package="100"/><location href="Packages/${name}.rpm"/>` +
  '<format><rpm:provides><rpm:entry name="x"/></rpm:provides></format></package>'
const chunks = function* (text: string) {
  for (let i = 0; i < text.length; i += 64 << 10) yield text.slice(i, i + (64 << 10))
}

describe('primary.xml', () => {
  it('streams every package out, an end tag cut between two chunks included', async () => {
    const names = Array.from({ length: 3000 }, (_, i) => `pkg-${i}`)
    const into: RpmPackage[] = []
    await primaryPackages(Readable.from(chunks(`<metadata>${names.map((n) => entry(n)).join('\n')}</metadata>`)), 'base', 'x86_64', into, 'rocky-9 BaseOS')
    expect(into.map((p) => p.name)).toEqual(names)
  })

  it('an entry with a 50 MiB attribute ends in one EFETCH line once it passes the cap, never parsed', async () => {
    const huge = ` junk="${'x'.repeat(50 << 20)}"`
    const into: RpmPackage[] = []
    let read = 0
    const stream = Readable.from(
      (function* () {
        for (const c of chunks(`<metadata>${entry('ok')}${entry('evil', huge)}</metadata>`)) {
          read += c.length
          yield c
        }
      })(),
    )
    await expect(primaryPackages(stream, 'base', 'x86_64', into, 'rocky-9 BaseOS')).rejects.toThrow(
      /^rocky-9 BaseOS: primary\.xml has a package entry over 4 MiB, which no real repository has/,
    )
    expect(into.map((p) => p.name)).toEqual(['ok'])
    // It stopped reading at the cap, not at the end of the 50 MiB.
    expect(read).toBeLessThan(PACKAGE_ENTRY_CAP + (128 << 10))
  })
})
