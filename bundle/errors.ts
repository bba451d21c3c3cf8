/**
 * Every failure the tools report carries a stable `code` that tests and scripts match on,
 * the facts that explain it, and the exit status the command line uses: 2 for usage and
 * input errors (the user can fix the command or the file), 1 for failures.
 */
export type ErrorCode =
  | 'EUSAGE' // a wrong flag or argument
  | 'ELOCK' // a malformed lock or manifest
  | 'EINTEGRITY' // bytes that do not match their pinned digest
  | 'EBADSIZE' // more (or fewer) bytes than the lock says
  | 'EFETCH' // a download that failed for good
  | 'ENOTPINNED' // something the build needs that the lock does not pin
  | 'EVERIFY' // a bundle that does not prove itself
  | 'EREGISTRY'
  | 'ESTEP'
  | 'ESIGNATURE' // a bundle not signed by the key it must be

// ENOTPINNED is the user's to fix too: the manifest lacks an image, or a tag lacks a platform.
const usageCodes = new Set<ErrorCode>(['EUSAGE', 'ELOCK', 'ENOTPINNED'])

export class KaError extends Error {
  readonly code: ErrorCode
  readonly exitCode: 1 | 2
  readonly facts: Record<string, unknown>

  constructor(code: ErrorCode, message: string, facts: Record<string, unknown> = {}) {
    super(message)
    this.name = 'KaError'
    this.code = code
    this.exitCode = usageCodes.has(code) ? 2 : 1
    this.facts = facts
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, ...this.facts }
  }
}

export const isKaError = (e: unknown): e is KaError => e instanceof KaError

/**
 * A failure that is not one of ours (a bug): one line, with the stack only on request, so
 * that no input ever shows a user a stack trace. Every known bad input is a KaError before
 * it gets here.
 */
export function internalError(program: string, e: unknown): string {
  const err = e as Error
  const detail = process.env.KUBE_AIRGAP_DEBUG
    ? (err?.stack ?? String(e))
    : `${err?.message ?? String(e)} (run with KUBE_AIRGAP_DEBUG=1 for the details, and report it)`
  return `${program}: internal error: ${detail.replace(/\n(?!\s+at )/g, ' ')}`
}
