import { describe, expect, it } from 'vitest'
import { memoryIo } from '../../bundle/report.js'
import { main } from '../../installer/cli.js'
import { PHASES } from '../../installer/phases/index.js'
import { bashCompletions } from '../support/cli.js'

/** `./install` called in process: only its output and exit status matter here. */
describe('./install, in process', () => {
  it('phases lists verify and every phase in order', async () => {
    const io = memoryIo()
    expect(await main(['phases'], io)).toBe(0)
    expect(
      io.stdout
        .split('\n')
        .filter(Boolean)
        .map((l) => l.split(/\s+/)[0]),
    ).toEqual(['verify', ...PHASES.map((p) => p.name)])
  })

  it('bad flags are one line and exit 2, before anything is read', async () => {
    for (const [argv, line] of [
      [[], 'install: EUSAGE: say which node this is: --role master or --role worker'],
      [['--role', 'boss'], 'install: EUSAGE: --role "boss": use master or worker'],
      [
        ['--role', 'worker', '--phases', 'kernal'],
        'install: EUSAGE: --phases: unknown phase "kernal" (did you mean "kernel"?); the phases are verify, preflight, packages, kernel, containerd, cni, kubernetes, images, endpoint, cluster, network, finish, addons (./install phases)',
      ],
      [['--role', 'worker', '--root', '/nonexistent/root'], 'install: EUSAGE: --root /nonexistent/root: no such folder; create it or give an existing one'],
    ] as const) {
      const io = memoryIo()
      expect(await main([...argv], io), argv.join(' ')).toBe(2)
      expect(io.stderr).toBe(`${line}\n`)
    }
  })

  it('every command has examples in its --help', async () => {
    for (const cmd of [[], ...['verify', 'join-command', 'doctor', 'reset', 'config', 'version', 'phases', 'completion'].map((c) => [c])]) {
      const io = memoryIo()
      expect(await main([...cmd, '--help'], io), cmd.join(' ')).toBe(0)
      expect(io.stdout, cmd.join(' ')).toMatch(/\nExamples?:\n {2}(sudo )?\.\/install/)
    }
  })

  it('completion bash completes ./install: commands, roles, phases, files', async () => {
    const io = memoryIo()
    expect(await main(['completion', 'bash'], io)).toBe(0)
    expect(bashCompletions(io.stdout, './install do')).toEqual(['doctor'])
    expect(bashCompletions(io.stdout, './install --role ')).toEqual(['master', 'worker'])
    expect(bashCompletions(io.stdout, './install --phases ker')).toEqual(['kernel'])
    expect(bashCompletions(io.stdout, './install reset --p')).toEqual(['--purge'])
    // Hidden options stay hidden.
    expect(bashCompletions(io.stdout, './install --bu')).toEqual([])
  })
})

describe('./install, first contact', () => {
  it('a word that is no command is named with what was meant, in one line', async () => {
    for (const [argv, line] of [
      [['doctr'], "install: EUSAGE: unknown command 'doctr' (did you mean doctor?); see ./install --help"],
      [['master'], 'install: EUSAGE: master is not a command: the role is a flag, --role master'],
      [['--dry-run', 'worker'], 'install: EUSAGE: worker is not a command: the role is a flag, --role worker'],
    ] as const) {
      const io = memoryIo()
      expect(await main([...argv], io), argv.join(' ')).toBe(2)
      expect(io.stderr).toBe(`${line}\n`)
    }
  })

  it('phases --json (before or after the command) prints the phases as JSON', async () => {
    for (const argv of [
      ['--json', 'phases'],
      ['phases', '--json'],
    ]) {
      const io = memoryIo()
      expect(await main(argv, io)).toBe(0)
      const out = JSON.parse(io.stdout)
      expect(out.ok).toBe(true)
      expect(out.phases.map((p: { name: string }) => p.name)).toEqual(['verify', ...PHASES.map((p) => p.name)])
    }
  })
})
