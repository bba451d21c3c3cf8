import { describe, expect, it } from 'vitest'
import { Sha256 } from '../../bundle/digest.js'
import { isSafeRelativePath } from '../../bundle/layout.js'
import { localTime, nearest } from '../../bundle/text.js'

describe('values', () => {
  it('parses sha256 in every spelling and compares them as values', () => {
    const d = Sha256.of('hello')
    expect(Sha256.fromSri(d.sri).equals(d)).toBe(true)
    expect(Sha256.fromOci(d.oci).equals(d)).toBe(true)
    expect(() => Sha256.fromSri('sha512-AAAA')).toThrow()
    expect(() => Sha256.fromHex('abc')).toThrow()
  })
  it('accepts only safe relative paths', () => {
    for (const p of ['files/a', 'a']) expect(isSafeRelativePath(p)).toBe(true)
    for (const p of ['/etc/passwd', '../x', 'a/../b', 'a//b', './a', '']) expect(isSafeRelativePath(p)).toBe(false)
  })
  it('suggests the nearest known word', () => {
    expect(nearest('contianerd', ['containerd', 'runc'])).toBe('containerd')
    expect(nearest('zzzzzzzz', ['containerd', 'runc'])).toBeUndefined()
  })
})

describe('the version', () => {
  it('is the one package.json says (the bundled installer cannot read package.json)', async () => {
    const { readFile } = await import('node:fs/promises')
    const { TOOL_VERSION } = await import('../../bundle/version.js')
    const { REPO } = await import('../support/fake-upstream.js')
    expect(JSON.parse(await readFile(`${REPO}/package.json`, 'utf8')).version).toBe(TOOL_VERSION)
  })
})

describe('localTime', () => {
  it('is local time with its offset from UTC, to the second', () => {
    const d = new Date('2026-12-06T20:41:05.123Z')
    const t = localTime(d)
    expect(t).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$/)
    // The same instant, read back.
    expect(Date.parse(t)).toBe(Date.parse('2026-12-06T20:41:05Z'))
  })
})
