import { internalError, isKaError } from './errors.js'
import { printable } from './text.js'

/** Where a command's output goes: stdout for results, stderr for notes and errors. Control characters are escaped. */
export interface Io {
  out(text: string): void
  err(text: string): void
}

export const processIo: Io = {
  out: (s) => void process.stdout.write(printable(s)),
  err: (s) => void process.stderr.write(printable(s)),
}

/**
 * Runs a command line's `main` when this module is the program itself (not when a test
 * imports it): output piped into `head` that closes early ends the program quietly.
 */
export async function runWhenExecuted(moduleUrl: string, main: (argv: string[]) => Promise<number>): Promise<void> {
  const { realpathSync } = await import('node:fs')
  const { fileURLToPath } = await import('node:url')
  let executed = false
  try {
    executed = realpathSync(process.argv[1] ?? '') === realpathSync(fileURLToPath(moduleUrl))
  } catch {
    executed = false
  }
  if (!executed) return
  process.stdout.on('error', (e: NodeJS.ErrnoException) => (e.code === 'EPIPE' ? process.exit(process.exitCode ?? 0) : undefined))
  process.exitCode = await main(process.argv.slice(2))
}

/** Output into strings, for tests that call `main(argv)` in process. */
export function memoryIo(): Io & { stdout: string; stderr: string } {
  const io = {
    stdout: '',
    stderr: '',
    out: (s: string) => {
      io.stdout += printable(s)
    },
    err: (s: string) => {
      io.stderr += printable(s)
    },
  }
  return io
}

export const printJson = (io: Io, value: unknown): void => io.out(`${JSON.stringify(value, null, 2)}\n`)

/**
 * commander's output through \`io\`, and its usage errors as our one line with a code:
 * \`bundle: EUSAGE: unknown option '--platfrom' (did you mean --platform?); see bundle build --help\`.
 */
export function commanderOutput(program: string, io: Io, helpCommand: string) {
  return {
    writeOut: (s: string) => io.out(s),
    writeErr: (s: string) => io.err(s),
    outputError: (s: string, write: (s: string) => void) => {
      const text = s
        .replace(/^error: /, '')
        .replace(/\s*\(Did you mean (.*)\?\)/, ' (did you mean $1?)')
        .replace(/\s+/g, ' ')
        .trim()
      write(`${program}: EUSAGE: ${text}; see ${helpCommand} --help\n`)
    },
  }
}

/** commander's errors, told apart without importing it here: `commander.*` codes. */
const commanderCode = (e: unknown): string | undefined => {
  const code = (e as { code?: unknown } | null)?.code
  return typeof code === 'string' && code.startsWith('commander.') ? code : undefined
}

/**
 * The one place a failure becomes what the user sees and the exit status, for `bundle` and
 * `./install` alike: a KaError is its problems (the first in the message, the rest above
 * it), one line `PROGRAM: CODE: message` and its exit status (2 usage, 1 failure), plus
 * `{ ok: false, error }` on stdout with --json; commander's usage errors are 2 (it printed
 * the line); anything else is a bug, one line without a stack trace.
 */
export function reportFailure(program: string, e: unknown, json: boolean, io: Io): number {
  const cc = commanderCode(e)
  if (cc) return cc === 'commander.helpDisplayed' || cc === 'commander.help' || cc === 'commander.version' ? 0 : 2
  if (isKaError(e)) {
    if (json) printJson(io, { ok: false, error: e.toJSON() })
    const problems = (e.facts.problems as { path: string; problem: string }[] | undefined) ?? []
    for (const p of problems.slice(1)) io.err(`  ${p.path}: ${p.problem}\n`)
    io.err(`${program}: ${e.code}: ${e.message}\n`)
    return e.exitCode
  }
  io.err(`${internalError(program, e)}\n`)
  return 1
}
