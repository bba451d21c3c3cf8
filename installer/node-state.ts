import type { Host } from './host.js'
import { PROC_MODULES, PROC_SWAPS } from './paths.js'

/** Live kernel state the phases and doctor read (under --root too). */

/** The active swap areas, one /proc/swaps line each (the header left out). */
export async function activeSwaps(host: Host): Promise<string[]> {
  return ((await host.readText(PROC_SWAPS)) ?? '').split('\n').slice(1).filter((l) => l.trim())
}

/** The names of the loaded kernel modules. */
export async function loadedModules(host: Host): Promise<Set<string>> {
  return new Set(((await host.readText(PROC_MODULES)) ?? '').split('\n').map((l) => l.split(' ')[0]!))
}
