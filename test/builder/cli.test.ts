import { describe, expect, it } from 'vitest'
import { memoryIo } from '../../bundle/report.js'
import { main } from '../../builder/cli.js'
import { bashCompletions } from '../support/cli.js'

/** `bundle` called in process: only its output and exit status matter here. */
describe('bundle, in process', () => {
  it('--help lists every command, with exit 0', async () => {
    const io = memoryIo()
    expect(await main(['--help'], io)).toBe(0)
    for (const c of ['lock', 'build', 'verify', 'inspect', 'keygen', 'verifier', 'join']) expect(io.stdout, c).toMatch(new RegExp(`^  ${c}\\b`, 'm'))
  })

  it('bad input is one line and exit 2, with --json a JSON result with ok: false', async () => {
    const io = memoryIo()
    expect(await main(['build', '--lock', '/nonexistent/bundle.lock.json'], io)).toBe(2)
    expect(io.stderr).toBe('bundle: EUSAGE: /nonexistent/bundle.lock.json: cannot read the lock; give one with --lock or make one with `bundle lock`\n')
    expect(io.stdout).toBe('')
    const json = memoryIo()
    expect(await main(['build', '--json', '--concurrency', '0'], json)).toBe(2)
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: false, error: { code: 'EUSAGE', message: expect.stringMatching(/^--concurrency "0"/) } })
    const unknown = memoryIo()
    expect(await main(['bulid'], unknown)).toBe(2)
    expect(unknown.stderr).toBe("bundle: EUSAGE: unknown command 'bulid' (did you mean build?); see bundle --help\n")
  })

  it('every command has examples in its --help', async () => {
    for (const cmd of [[], ...['lock', 'build', 'keygen', 'verifier', 'join', 'verify', 'inspect', 'version', 'versions', 'completion'].map((c) => [c])]) {
      const io = memoryIo()
      expect(await main([...cmd, '--help'], io), cmd.join(' ')).toBe(0)
      expect(io.stdout, cmd.join(' ')).toMatch(/\nExamples?:\n {2}bundle /)
    }
  })

  it('completion bash is made from the command line itself, and real bash completes commands, options and choices with it', async () => {
    const io = memoryIo()
    expect(await main(['completion', 'bash'], io)).toBe(0)
    expect(bashCompletions(io.stdout, 'bundle ver')).toEqual(['verifier', 'verify', 'version', 'versions'])
    expect(bashCompletions(io.stdout, 'bundle build --pl')).toEqual(['--platform'])
    expect(bashCompletions(io.stdout, 'bundle build --platform linux/a')).toEqual(['linux/amd64', 'linux/arm64'])
    expect(bashCompletions(io.stdout, 'bundle build --media ')).toEqual(['fat32', 'exfat'])
    expect(bashCompletions(io.stdout, 'bundle build --lock bundle.lock.j')).toEqual(['bundle.lock.json'])
    const zsh = memoryIo()
    expect(await main(['completion', 'zsh'], zsh)).toBe(0)
    expect(zsh.stdout).toMatch(/^autoload -U \+X bashcompinit && bashcompinit$/m)
    const bad = memoryIo()
    expect(await main(['completion', 'fish'], bad)).toBe(2)
    expect(bad.stderr).toMatch(/^bundle: EUSAGE: .*fish.*bash, zsh/)
  })
})

describe('bundle, first contact', () => {
  it('verify given a lock says it is a lock, in one line, instead of a tar checksum failure per block', async () => {
    const io = memoryIo()
    expect(await main(['verify', 'bundle.lock.json'], io)).toBe(2)
    expect(io.stderr).toBe(
      'bundle: EUSAGE: bundle.lock.json: a lock (JSON), not a bundle; verify the bundle .tar built from it, its parts, or an unpacked bundle folder (bundle inspect bundle.lock.json previews what it builds)\n',
    )
  })

  it('inspect --out without --sbom is refused in one line, not ignored', async () => {
    const io = memoryIo()
    expect(await main(['inspect', 'dist/x.tar', '--out', 'x.json'], io)).toBe(2)
    expect(io.stderr).toBe('bundle: EUSAGE: --out x.json writes the SBOM: give --sbom with it (bundle inspect dist/x.tar --sbom --out x.json)\n')
  })
})
