import yaml from 'js-yaml'
import { KaError, type ErrorCode } from './errors.js'

/** No settings file we read is anywhere near this; past it, it is not one. */
const MAX_YAML = 1 << 20

/**
 * Loads a YAML document a user (or a stick) hands us, refusing what no settings file needs:
 * more than 1 MiB, and aliases to mappings or lists (`*a` for `&a { ... }`), which is how an
 * alias bomb of a few hundred bytes expands to gigabytes when walked. js-yaml shares an
 * aliased node instead of copying it, so one walk that meets an object twice finds them,
 * in time linear in the text. Errors are one line with `code`, never a parser's trace.
 */
export function loadYaml(text: string, source: string, code: ErrorCode = 'EUSAGE'): unknown {
  if (text.length > MAX_YAML) throw new KaError(code, `${source}: ${text.length} bytes is not a settings file (at most ${MAX_YAML} bytes)`)
  let doc: unknown
  try {
    // The core schema: strings, numbers, booleans, null; no timestamps, binaries or merge keys.
    doc = yaml.load(text, { schema: yaml.CORE_SCHEMA })
  } catch (e) {
    throw new KaError(code, `${source}: not valid YAML: ${(e as Error).message.split('\n')[0]}`)
  }
  const seen = new Set<object>()
  const walk = (v: unknown): void => {
    if (typeof v !== 'object' || v === null) return
    if (seen.has(v)) throw new KaError(code, `${source}: uses a YAML alias (*name) for a mapping or a list; write the values out (aliases are refused here)`)
    seen.add(v)
    for (const child of Object.values(v)) walk(child)
  }
  walk(doc)
  return doc
}
