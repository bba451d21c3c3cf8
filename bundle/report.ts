import { internalError, isKaError } from './errors.js'
import { printable } from './text.js'

/** Where a command's output goes: stdout for results, stderr for notes and errors. Control characters are escaped. */
export interface Io {
  out(text: string): void
  err(text: string): void
}

/**
 * Whether a stream gets colour: \`NO_COLOR\` set (no-color.org) turns it off, \`FORCE_COLOR\`
 * (not 0) on; otherwise a terminal that is not \`TERM=dumb\`.
 */
export function wantsColour(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.NO_COLOR) return false
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '0') return true
  return !!stream.isTTY && env.TERM !== 'dumb'
}

const RED = '31'
const YELLOW = '33'
const GREEN = '32'
const CYAN = '36'
/** The words that start a line on both command lines, and their colour. */
const LEVEL_COLOURS: Record<string, string> = { FAIL: RED, failed: RED, WARN: YELLOW, TODO: CYAN, note: CYAN, OK: GREEN, 'ok:': GREEN, done: GREEN }

/**
 * Colours the level word a line starts with (\`FAIL\`, \`WARN\`, \`TODO\`, \`OK\`, \`ok:\`,
 * \`note\`; an install step's \`failed\` or \`done\`) and an error's code. Only the colour
 * changes: the words are the same with colour off. Runs on text already made printable, so
 * the only escape sequences out are these.
 */
export const paint = (text: string): string =>
  text
    .replace(/^(\[[a-z-]+\] )?(FAIL|failed|WARN|TODO|note|OK|ok:|done)(?= |$)/gm, (_, step: string | undefined, word: string) => {
      return `${step ?? ''}\x1b[${LEVEL_COLOURS[word]}m${word}\x1b[0m`
    })
    .replace(/^([\w./-]+: )(E[A-Z]+)(?=: )/gm, `$1\x1b[${RED}m$2\x1b[0m`)

/** Writes to a terminal or pipe: control characters escaped, then coloured when the stream wants colour. */
export const terminal = (stream: NodeJS.WritableStream & { isTTY?: boolean }): ((s: string) => void) => {
  const colour = wantsColour(stream)
  return (s) => void stream.write(colour ? paint(printable(s)) : printable(s))
}

export const processIo: Io = { out: terminal(process.stdout), err: terminal(process.stderr) }

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
