import { describe, expect, it } from 'vitest'
import { closure, installStages, parsePackages } from '../../builder/packages/debian.js'

/** An index in the archive's own stanza format: name, priority, depends, provides. */
const index = (rows: [string, string, string, string?][]) =>
  parsePackages(
    rows
      .map(
        ([name, priority, depends, provides]) =>
          `Package: ${name}\nVersion: 1\nPriority: ${priority}\n${depends ? `Depends: ${depends}\n` : ''}${provides ? `Provides: ${provides}\n` : ''}Filename: pool/${name}.deb\nSHA256: ${'0'.repeat(64)}\nSize: 1\n`,
      )
      .join('\n'),
  )

describe('the closure of a Debian package set', () => {
  it("takes a virtual package's provider from what every installation has, not the index's first: what that provider needs is still carried", () => {
    // bookworm: base-files pre-depends on awk, provided by gawk (optional, needs libreadline8)
    // and mawk (required). A minbase root has mawk and no libreadline8.
    const all = new Map(
      index([
        ['base-files', 'required', 'awk'],
        ['gawk', 'optional', 'libreadline8', 'awk'],
        ['mawk', 'required', '', 'awk'],
        ['libreadline8', 'optional', ''],
        ['libpython3.11-stdlib', 'optional', 'libreadline8'],
      ]).map((p) => [p.name, p]),
    )
    expect(closure(['libpython3.11-stdlib'], all).map((p) => p.name)).toEqual(['libpython3.11-stdlib', 'libreadline8'])
  })

  it('counts no alternative of a required package as everywhere unless it is required itself: what it needs is carried', () => {
    // bookworm: init-system-helpers (required) depends on usrmerge | usr-is-merged; debootstrap
    // installs usr-is-merged, so perl (usrmerge's) is not there, and libsnmp40 needs libperl5.36.
    const all = new Map(
      index([
        ['init-system-helpers', 'required', 'usrmerge | usr-is-merged'],
        ['usrmerge', 'optional', 'perl'],
        ['usr-is-merged', 'optional', ''],
        ['perl', 'standard', 'libperl5.36'],
        ['libperl5.36', 'optional', ''],
        ['libsnmp40', 'optional', 'libperl5.36'],
      ]).map((p) => [p.name, p]),
    )
    expect(closure(['libsnmp40'], all).map((p) => p.name)).toEqual(['libperl5.36', 'libsnmp40'])
  })
})

describe('the order a Debian package set installs in', () => {
  it('puts a pre-dependency and everything it needs a stage before what pre-depends on it; dependency cycles share a stage; a pre-dependency cycle is refused', () => {
    // bookworm's python3: python3 pre-depends on python3-minimal, which pre-depends on
    // python3.11-minimal, which needs libpython3.11-minimal; python3 and libpython3-stdlib need each other.
    const set = index([
      ['python3', 'optional', 'python3-minimal, libpython3-stdlib'],
      ['libpython3-stdlib', 'optional', 'python3 | python3-dummy'],
      ['python3-minimal', 'optional', ''],
      ['python3.11-minimal', 'optional', 'libpython3.11-minimal'],
      ['libpython3.11-minimal', 'optional', ''],
      ['ansible-core', 'optional', 'python3:any', ''],
    ])
    const pre = (name: string, on: string) => Object.assign(set.find((p) => p.name === name)!, { preDepends: on })
    pre('python3', 'python3-minimal (= 3.11.2-1+b1)')
    pre('python3-minimal', 'python3.11-minimal (>= 3.11.2-1~)')
    set.find((p) => p.name === 'python3-minimal')!.depends = 'python3.11-minimal (>= 3.11.2-1~)'
    set.find((p) => p.name === 'python3')!.depends += ', python3-minimal (= 3.11.2-1+b1)'
    expect(Object.fromEntries(installStages(set))).toEqual({
      'libpython3.11-minimal': 0,
      'python3.11-minimal': 0,
      'python3-minimal': 1,
      python3: 2,
      'libpython3-stdlib': 2,
      'ansible-core': 2,
    })
    const cycle = index([
      ['a', 'optional', 'b'],
      ['b', 'optional', 'a'],
    ])
    cycle[0]!.preDepends = 'b'
    cycle[1]!.preDepends = 'a'
    expect(() => installStages(cycle)).toThrow(/a pre-dependency cycle among a, b: no order installs them/)
  })
})
