import { describe, expect, it } from 'vitest'
import { osRelease, releaseFamily } from '../../bundle/os-release.js'

describe("a node's os-release", () => {
  it('gives the release as the lock names its sets, and the package family by ID, else by ID_LIKE', () => {
    expect(osRelease('ID=ubuntu\nVERSION_ID="22.04"\n')).toEqual({ release: 'ubuntu-22.04', family: 'deb' })
    expect(osRelease('NAME="openEuler"\nID="openEuler"\nVERSION_ID="22.03"\n')).toEqual({ release: 'openeuler-22.03', family: 'rpm' })
    expect(osRelease('ID=kylin\nVERSION="V10 (Lance)"\nVERSION_ID="V10"\n')).toEqual({ release: 'kylin-v10sp3', family: 'rpm' })
    // Derivatives: their own ID, a known family through ID_LIKE.
    expect(osRelease('ID=linuxmint\nID_LIKE="ubuntu debian"\nVERSION_ID="21.3"\n')).toEqual({ release: 'linuxmint-21.3', family: 'deb' })
    expect(osRelease('ID="ol"\nID_LIKE="fedora"\nVERSION_ID="9.3"\n')).toEqual({ release: 'ol-9.3', family: 'rpm' })
    expect(osRelease('ID=alpine\nVERSION_ID=3.20.0\n')).toEqual({ release: 'alpine-3.20.0' })
    expect(osRelease('')).toEqual({})
  })

  it('a release id has the family of its distribution', () => {
    expect(['debian-12', 'ubuntu-24.04', 'rocky-9', 'almalinux-8', 'kylin-v10sp3', 'openeuler-22.03', 'alpine-3'].map(releaseFamily)).toEqual([
      'deb',
      'deb',
      'rpm',
      'rpm',
      'rpm',
      'rpm',
      undefined,
    ])
  })
})
